"""Audits sharded over processes: blocks, merging, and `torchrun ... audit` end to end.

The known answer is the single-process audit: a sharded audit adds up the same
per-structure sums in another grouping, so it must give the same report.
"""

import json
import os
import subprocess
import sys

import pytest
from metatomic.torch import ModelOutput

import equiscope as eq
from _models import PlantedAnisotropy, export, write_copper
from equiscope.audit._engine import _merge, _run
from equiscope.shards import Shards
from equiscope_atoms import MetatomicAdapter, load_model, read_structures

OUTPUTS = {
    "energy": ModelOutput(unit="eV", sample_kind="system"),
    "non_conservative_force": ModelOutput(unit="eV/Angstrom", sample_kind="atom"),
}


@pytest.mark.parametrize("n", [0, 1, 5, 7])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_blocks_cover_the_items_in_order(n, size):
    items = list(range(n))
    blocks = [Shards(rank, size).block(items) for rank in range(size)]
    assert [item for block in blocks for item in block] == items
    lengths = [len(b) for b in blocks]
    assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_blocks_balance_the_costs(size):
    costs = [1, 9, 2, 2, 8, 1, 1, 5, 3, 4]
    items = list(range(len(costs)))
    blocks = [Shards(rank, size).block(items, costs) for rank in range(size)]
    assert [item for block in blocks for item in block] == items
    for block in blocks:  # within one item's cost of the mean
        assert abs(sum(costs[i] for i in block) - sum(costs) / size) <= max(costs)
    with pytest.raises(ValueError, match="2 costs for 10 items"):
        Shards(0, size).block(items, [1, 2])


def test_one_process_is_not_distributed():
    shards = Shards.current()
    assert not shards.distributed and shards.leader
    assert shards.all_gather({"a": 1}) == [{"a": 1}]
    assert shards.broadcast(3) == 3


def test_audit_shards_only_when_asked(planted, monkeypatch):
    """Inside someone else's process group (metatrain's distributed training, whose
    monitor audits on rank 0 alone) ``audit`` must not start collectives of its own."""
    import torch.distributed

    from equiscope_atoms import audit

    _, model_path, data = planted
    model = load_model(model_path)
    structures = read_structures(data, atomic_types=model.atomic_types)[:2]

    def no_collectives(*args, **kwargs):
        raise AssertionError("audit started a collective")

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    monkeypatch.setattr(torch.distributed, "all_gather_object", no_collectives)
    monkeypatch.setattr(torch.distributed, "broadcast_object_list", no_collectives)
    assert Shards.current().distributed  # what an explicit shards=Shards.current() gives
    grid = eq.grid("octahedral", inversion=True)
    report = audit(model, structures, grid=grid, outputs=["energy"], progress=False)
    assert report["processes"] == 1 and report["structures"] == 2


def test_an_error_on_one_rank_is_raised_on_every_rank():
    from equiscope.audit import AuditOptionError
    from equiscope.audit._engine import _attempt, _raise_failures

    shards = Shards(1, 2)

    def fails(error):
        def work():
            raise error

        return work

    failure = _attempt(shards, fails(RuntimeError("CUDA out of memory.\nmore lines")))
    with pytest.raises(RuntimeError, match=r"^process 1 of the audit failed: RuntimeError: CUDA"):
        _raise_failures([{"fine": 1.0}, failure])
    option = _attempt(shards, fails(AuditOptionError("label 'x' of y has 3 values")))
    with pytest.raises(AuditOptionError, match=r"^label 'x' of y has 3 values$"):
        _raise_failures([option])
    assert _attempt(shards, lambda: 5) == 5
    with pytest.raises(KeyError):  # one process: the error itself
        _attempt(Shards(), fails(KeyError("k")))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded")
    model = export(PlantedAnisotropy(0.6, [0.2, -0.1, 0.3]), folder / "planted.pt", outputs=OUTPUTS)
    data = write_copper(folder / "cu.xyz", n=5, disorder=True)
    return folder, model, data


def test_merged_blocks_equal_one_run(planted):
    _, model_path, data = planted
    model = load_model(model_path)
    structures = read_structures(data, atomic_types=model.atomic_types)
    grid = eq.grid("lebedev", degree=4, inversion=True)
    outputs = ["energy", "non_conservative_force"]

    def run(block):
        adapter = MetatomicAdapter(model, batch_size=16)
        indexed = [(s.index, s) for s in block]
        return _run(adapter, indexed, grid, [*outputs, "forces", "stress"], [], 2, progress=False)

    whole, _, _ = run(structures)
    parts = [run(Shards(rank, 3).block(structures)) for rank in range(3)]
    merged, _, _ = _merge(parts)
    assert set(merged) == set(whole) == {"energy", "non_conservative_force", "forces", "stress"}
    for name, st in whole.items():
        assert merged[name].per_structure == st.per_structure  # same values, same order
        assert merged[name].rmse == pytest.approx(st.rmse, rel=1e-13)
        assert merged[name].entries == st.entries
        for sector, value in st.sector_norms.items():
            assert merged[name].sector_norms[sector] == pytest.approx(value, rel=1e-13)
        for key, value in st.errors.items():
            assert merged[name].errors[key] == pytest.approx(value, rel=1e-13)
        assert merged[name].error_entries == st.error_entries
        assert (st.error_entries > 0) == (name != "non_conservative_force")  # EMT labels


def test_merged_blocks_keep_the_layer_spectra(planted):
    from equiscope_atoms import wrap_model
    from equiscope_atoms.pet import tiny_pet

    _, _, data = planted
    model = wrap_model(tiny_pet([29], width=8, layers=1))
    structures = read_structures(data, atomic_types=model.atomic_types)[:3]
    grid = eq.grid("lebedev", degree=4, inversion=True)
    layers = ["gnn_layers.0_node", "gnn_layers.0_edge"]

    def run(block):
        adapter = MetatomicAdapter(model, batch_size=64)
        indexed = [(s.index, s) for s in block]
        return _run(adapter, indexed, grid, ["energy"], layers, 2, progress=False, roundoff=False)

    _, whole_norms, whole_residual = run(structures)
    _, norms, residual = _merge([run(Shards(rank, 2).block(structures)) for rank in range(2)])
    assert set(norms) == set(whole_norms) == set(layers)
    for path in layers:
        assert norms[path] == pytest.approx(whole_norms[path], rel=1e-10)
        assert residual[path] == pytest.approx(whole_residual[path], rel=1e-10)
        assert sum(norms[path].values()) > 0


def _equiscope(*arguments, processes: int = 1) -> subprocess.CompletedProcess:
    """``equiscope ARGUMENTS`` in a fresh interpreter, under torchrun if ``processes > 1``."""
    launcher = [sys.executable, "-m"]
    if processes > 1:
        launcher += ["torch.distributed.run", "--standalone", "--nproc-per-node", f"{processes}"]
        launcher += ["-m"]
    return subprocess.run(
        [*launcher, "equiscope.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def _audit_command(model, data, out, *extra):
    return [
        "audit",
        str(model),
        str(data),
        "-o",
        str(out),
        "--grid",
        "octahedral",
        "--outputs",
        "energy,non_conservative_force,forces",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "structures"),
    [
        ((), 5),
        # fewer structures than processes (rank 1 has none), the auto grid search
        # decided on rank 0, an output audited as totals
        (("--structures", "1", "--grid", "auto", "--totals", "non_conservative_force"), 1),
        # the default estimate: orientations seeded per structure, rounds decided alike
        (("--grid", "estimate", "--precision", "0.02"), 5),
    ],
)
def test_torchrun_audit_equals_one_process(planted, tmp_path, extra, structures):
    _, model, data = planted
    single = _equiscope(*_audit_command(model, data, tmp_path / "one", *extra))
    assert single.returncode == 0, single.stderr
    sharded = _equiscope(*_audit_command(model, data, tmp_path / "two", *extra), processes=2)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    assert sharded.stdout.count("report: ") == 1  # only rank 0 prints and writes
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["structures"] == one["structures"] == structures
    assert two["grid"] == one["grid"]
    assert [step["finer"] for step in two["auto_grid"]] == [s["finer"] for s in one["auto_grid"]]
    for step, expected in zip(two["auto_grid"], one["auto_grid"], strict=True):
        assert step["relative_change"] == pytest.approx(expected["relative_change"], rel=1e-9)
    for name, expected in one["outputs"].items():
        got = two["outputs"][name]
        assert got["equivariance_rmse"] == pytest.approx(expected["equivariance_rmse"], rel=1e-9)
        assert got["per_structure_equivariance"] == pytest.approx(
            expected["per_structure_equivariance"], rel=1e-9
        )
        assert got["spectrum"] == pytest.approx(expected["spectrum"], rel=1e-9, abs=1e-15)
        if name != "non_conservative_force":  # the others have EMT labels
            assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-9, abs=1e-12)
        if "convergence" in expected:
            assert got["convergence"]["equivariance_rmse"] == pytest.approx(
                expected["convergence"]["equivariance_rmse"], rel=1e-9
            )
        if expected.get("equivariance_rmse_ci95"):
            assert got["equivariance_rmse_ci95"] == pytest.approx(
                expected["equivariance_rmse_ci95"], rel=1e-9
            )
            assert got["estimate"] == expected["estimate"]
    # the planted P2 anisotropy is far above round-off, so the comparison means something
    assert one["outputs"]["energy"]["equivariance_rmse"] > 1e-3


@pytest.mark.slow
def test_torchrun_bad_input_is_one_line_on_every_rank(planted, tmp_path):
    folder, model, _ = planted
    empty = folder / "empty.xyz"
    empty.write_text("")
    result = _equiscope(*_audit_command(model, empty, tmp_path / "bad"), processes=2)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("equiscope audit")]
    assert len(errors) == 2 and all("empty.xyz" in line for line in errors)
    assert not (tmp_path / "bad").exists()
