"""Jet files: npz round trip, the landscape HDF5 layout, and one-line errors."""

import dataclasses

import h5py
import numpy as np
import pytest

from equiscope_jets import JetData, JetDataError, load_jets, save_jets

C = 200


def write_landscape(path, momenta, labels, *, truth=None, transposed=True, drop=()):
    """A pandas "fixed" frame under key "table", as in the public top-tagging landscape
    files: float block (E_i, PX_i, PY_i, PZ_i, truth*) and integer block (ttv, labels);
    ``blockK_values`` stored [rows, items] (pandas' transposed layout) or [items, rows]."""
    n = len(momenta)
    names = [f"{c}_{i}" for i in range(C) for c in ("E", "PX", "PY", "PZ")]
    floats = momenta.reshape(n, 4 * C)
    if truth is not None:
        names += ["truthE", "truthPX", "truthPY", "truthPZ"]
        floats = np.concatenate([floats, truth], axis=1)
    keep = [k for k, name in enumerate(names) if name not in drop]
    names, floats = [names[k] for k in keep], floats[:, keep].astype(np.float32)
    ints_names = [name for name in ("ttv", "is_signal_new") if name not in drop]
    ints = np.stack([np.arange(n) % 3, labels], axis=1)[:, : len(ints_names)].astype(np.int64)
    with h5py.File(path, "w") as store:
        table = store.create_group("table")
        table.attrs.update({"pandas_type": "frame", "pandas_version": "0.15.2", "ndim": 2})
        table.attrs["nblocks"] = 2
        table["axis0"] = np.array([*names, *ints_names], dtype="S")
        table["axis1"] = np.arange(n)
        for k, (block_names, values) in enumerate(((names, floats), (ints_names, ints))):
            table[f"block{k}_items"] = np.array(block_names, dtype="S")
            table[f"block{k}_values"] = values if transposed else values.T
            table[f"block{k}_values"].attrs["transposed"] = transposed
    return path


@pytest.fixture
def mixed(top_jets, qcd_jets):
    return JetData.concatenate([top_jets.select(slice(0, 3)), qcd_jets.select(slice(0, 2))])


def test_npz_round_trip(top_jets, tmp_path):
    path = save_jets(top_jets, tmp_path / "top.npz")
    assert not list(tmp_path.glob(".*partial*"))
    loaded = load_jets(path)
    for field in dataclasses.fields(JetData):
        if field.name != "metadata":
            np.testing.assert_array_equal(
                getattr(loaded, field.name), getattr(top_jets, field.name), err_msg=field.name
            )
    assert loaded.metadata == top_jets.metadata
    assert len(load_jets(path, limit=4)) == 4


def test_select_and_concatenate(top_jets, qcd_jets, mixed):
    assert len(mixed) == 5 and mixed.label.tolist() == [1, 1, 1, 0, 0]
    np.testing.assert_array_equal(mixed.momenta[3], qcd_jets.momenta[0])
    no_pid = dataclasses.replace(qcd_jets, pid=None)
    assert JetData.concatenate([top_jets, no_pid]).pid is None


@pytest.mark.parametrize("transposed", [True, False])
def test_landscape_hdf5(mixed, tmp_path, transposed):
    path = write_landscape(
        tmp_path / "train.h5", mixed.momenta, mixed.label, truth=mixed.truth, transposed=transposed
    )
    data = load_jets(path)
    np.testing.assert_array_equal(data.momenta, mixed.momenta)
    np.testing.assert_array_equal(data.label, mixed.label)
    np.testing.assert_allclose(data.truth, mixed.truth, rtol=1e-6)  # stored as float32
    np.testing.assert_allclose(data.jet, mixed.jet, rtol=1e-5, atol=1e-3)  # sum of constituents
    assert data.pid is None and data.charge is None
    assert data.metadata["ttv"].tolist() == [0, 1, 2, 0, 1]
    assert load_jets(path, limit=2).label.tolist() == [1, 1]


def test_landscape_without_truth_columns(mixed, tmp_path):
    data = load_jets(write_landscape(tmp_path / "test.h5", mixed.momenta, mixed.label))
    assert data.truth is None and len(data) == 5


# ---------------------------------------------------------------- errors


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _good(n=3):
    momenta = np.zeros((n, C, 4), dtype=np.float32)
    momenta[:, 0] = [100.0, 60.0, 0.0, 80.0]
    return momenta, np.zeros(n, dtype=np.int64)


def _error(path, match):
    with pytest.raises(JetDataError, match=match) as info:
        load_jets(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_and_unreadable_files(tmp_path):
    _error(tmp_path / "absent.npz", "absent.npz: no such file")
    _error(tmp_path, "no such file")  # a folder
    (tmp_path / "notes.txt").write_text("E px py pz\n")
    _error(tmp_path / "notes.txt", "not an npz or HDF5 file")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    _error(tmp_path / "broken.npz", "unreadable npz")
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    _error(tmp_path / "broken.h5", "unreadable HDF5")
    with pytest.raises(JetDataError, match="limit must be at least 1"):
        load_jets(_npz(tmp_path / "ok.npz", momenta=_good()[0], label=_good()[1]), limit=0)


def test_empty_jets_and_nan_momenta(tmp_path):
    momenta, label = _good(4)
    momenta[2] = 0.0
    message = _error(_npz(tmp_path / "empty.npz", momenta=momenta, label=label), "jet 2 has no")
    assert "1 empty jet(s)" in message
    momenta, label = _good(4)
    momenta[1, 5, 2] = np.nan
    _error(_npz(tmp_path / "nan.npz", momenta=momenta, label=label), "jet 1 has NaN or infinite")
    momenta[1, 5, 2] = np.inf
    _error(_npz(tmp_path / "inf.npz", momenta=momenta, label=label), "jet 1 has NaN or infinite")
    _error(_npz(tmp_path / "none.npz", momenta=momenta[:0], label=label[:0]), "holds no jets")


def test_wrong_shapes_and_missing_arrays(tmp_path):
    momenta, label = _good()
    _error(_npz(tmp_path / "a.npz", label=label), "missing array 'momenta'")
    _error(_npz(tmp_path / "b.npz", momenta=momenta), "missing array 'label'")
    _error(
        _npz(tmp_path / "c.npz", momenta=momenta[..., :3], label=label),
        r"momenta has shape \(3, 200, 3\), expected \(jets, constituents, 4\)",
    )
    _error(
        _npz(tmp_path / "d.npz", momenta=momenta[0], label=label),
        r"momenta has shape \(200, 4\)",
    )
    _error(
        _npz(tmp_path / "e.npz", momenta=momenta, label=label[:2]),
        r"label has shape \(2,\), expected \(3,\) for 3 jets",
    )
    _error(
        _npz(tmp_path / "f.npz", momenta=momenta, label=label, pid=np.zeros((3, 100))),
        r"pid has shape \(3, 100\), expected \(3, 200\)",
    )
    _error(
        _npz(tmp_path / "g.npz", momenta=momenta, label=label, jet=np.zeros((3, 3))),
        r"jet has shape \(3, 3\), expected \(3, 4\)",
    )
    _error(_npz(tmp_path / "h.npz", momenta=momenta, label=label + 2), "labels must be 0")
    _error(_npz(tmp_path / "i.npz", momenta=momenta.astype(str), label=label), "non-numeric dtype")


def test_landscape_errors(mixed, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as store:
        store["data"] = np.zeros(3)
    _error(tmp_path / "other.h5", "no 'table' group")
    with h5py.File(tmp_path / "blockless.h5", "w") as store:
        store.create_group("table")
    _error(tmp_path / "blockless.h5", "no block0_items/block0_values")
    momenta, label = mixed.momenta, mixed.label
    _error(
        write_landscape(tmp_path / "nolabel.h5", momenta, label, drop={"ttv", "is_signal_new"}),
        "no 'is_signal_new' column",
    )
    _error(write_landscape(tmp_path / "px.h5", momenta, label, drop={"PX_7"}), "PX_7 is missing")
    _error(
        write_landscape(tmp_path / "gap.h5", momenta, label, drop={"E_3", "PX_3", "PY_3", "PZ_3"}),
        "not numbered 0..198",
    )
    names = {f"{c}_{i}" for i in range(C) for c in ("E", "PX", "PY", "PZ")}
    _error(write_landscape(tmp_path / "no_e.h5", momenta, label, drop=names), "no constituent")
    empty = momenta.copy()
    empty[1] = 0
    _error(write_landscape(tmp_path / "empty.h5", empty, label), "jet 1 has no constituents")
    nan = momenta.copy()
    nan[4, 0, 0] = np.nan
    _error(write_landscape(tmp_path / "nan.h5", nan, label), "jet 4 has NaN")
    with h5py.File(tmp_path / "shape.h5", "w") as store:
        table = store.create_group("table")
        table["block0_items"] = np.array([b"E_0", b"is_signal_new"])
        table["block0_values"] = np.zeros((4, 3))
    _error(tmp_path / "shape.h5", r"block0_values has shape \(4, 3\), expected \(jets, 2\)")


def test_save_needs_npz(top_jets, tmp_path):
    with pytest.raises(JetDataError, match=r"written as \.npz"):
        save_jets(top_jets, tmp_path / "top.h5")
