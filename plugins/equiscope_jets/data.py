"""Jet data sets in the top-tagging landscape layout: the container, npz I/O and checks.

A jet is up to ``C`` (200) constituents, each a 4-momentum ``(E, px, py, pz)`` in GeV,
sorted by ``pT`` descending and zero-padded (a slot is empty when ``E == 0``). Two files
are read by :func:`load_jets`:

* the npz written by :func:`save_jets` (``momenta`` [jets, C, 4], ``label``, ``pid``,
  ``charge``, ``jet`` [jets, 4], optional ``truth`` [jets, 4], metadata), and
* the public landscape HDF5 (pandas "fixed" format, key ``table``: columns ``E_i, PX_i,
  PY_i, PZ_i`` for ``i < C``, ``truthE, truthPX, truthPY, truthPZ``, ``ttv``,
  ``is_signal_new``), read with h5py only. It has no PID or charge; the jet 4-vector is
  the sum of the stored constituents.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["JetData", "JetDataError", "load_jets", "save_jets"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"
_COMPONENTS = ("E", "PX", "PY", "PZ")


class JetDataError(ValueError):
    """A jet file is missing, unreadable, malformed, or holds invalid jets."""


@dataclasses.dataclass
class JetData:
    """Jets with zero-padded constituents.

    ``momenta`` float32 [jets, C, 4] (E, px, py, pz); ``label`` int64 [jets] (1 top, 0 QCD);
    ``jet`` float64 [jets, 4] jet 4-vectors; ``pid`` int32 and ``charge`` int8 [jets, C]
    (``None`` when the source has none); ``truth`` float64 [jets, 4] the matched top's
    4-momentum (zeros for QCD; ``None`` when unknown); ``metadata`` strings and numbers.
    """

    momenta: np.ndarray
    label: np.ndarray
    jet: np.ndarray
    pid: np.ndarray | None = None
    charge: np.ndarray | None = None
    truth: np.ndarray | None = None
    metadata: dict[str, object] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.momenta.shape[0])

    @property
    def mask(self) -> np.ndarray:
        """bool [jets, C]: which constituent slots are filled (E > 0)."""
        return self.momenta[..., 0] > 0

    @property
    def n_constituents(self) -> np.ndarray:
        """int [jets]: filled constituent slots per jet."""
        return self.mask.sum(axis=1)

    def select(self, index) -> JetData:
        """The jets at ``index`` (anything numpy accepts for the first axis)."""

        def take(array):
            return None if array is None else array[index]

        return JetData(
            momenta=self.momenta[index],
            label=self.label[index],
            jet=self.jet[index],
            pid=take(self.pid),
            charge=take(self.charge),
            truth=take(self.truth),
            metadata=dict(self.metadata),
        )

    @staticmethod
    def concatenate(parts: list[JetData]) -> JetData:
        """Join data sets along the jet axis (optional fields kept only if all have them)."""
        if not parts:
            raise ValueError("nothing to concatenate")

        def join(name):
            arrays = [getattr(part, name) for part in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        metadata = dict(parts[0].metadata) if len(parts) == 1 else {"parts": len(parts)}
        return JetData(
            momenta=join("momenta"),
            label=join("label"),
            jet=join("jet"),
            pid=join("pid"),
            charge=join("charge"),
            truth=join("truth"),
            metadata=metadata,
        )


def save_jets(data: JetData, path: str | Path) -> Path:
    """Write ``data`` as a compressed npz (written to a temporary name, then renamed)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise JetDataError(f"{path}: jet files are written as .npz")
    arrays = {
        "momenta": np.asarray(data.momenta, dtype=np.float32),
        "label": np.asarray(data.label, dtype=np.int64),
        "jet": np.asarray(data.jet, dtype=np.float64),
    }
    for name in ("pid", "charge", "truth"):
        value = getattr(data, name)
        if value is not None:
            arrays[name] = value
    for key, value in data.metadata.items():
        arrays[f"meta_{key}"] = np.asarray(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.partial.npz")
    np.savez_compressed(staging, **arrays)
    os.replace(staging, path)
    return path


def load_jets(path: str | Path, *, limit: int | None = None) -> JetData:
    """Read jets from our npz or the landscape HDF5 (first ``limit`` jets if given) and
    check them: at least one jet, shapes, finite momenta, no empty jet."""
    path = Path(path)
    if not path.is_file():
        raise JetDataError(f"{path}: no such file")
    if limit is not None and limit < 1:
        raise JetDataError(f"{path}: limit must be at least 1, got {limit}")
    try:
        with open(path, "rb") as stream:
            head = stream.read(8)
    except OSError as error:
        raise JetDataError(f"{path}: cannot read ({error.strerror or error})") from None
    if head.startswith(_HDF5_SIGNATURE):
        data = _read_landscape(path, limit)
    elif head.startswith(_ZIP_SIGNATURE):
        data = _read_npz(path, limit)
    else:
        raise JetDataError(f"{path}: not an npz or HDF5 file")
    _check(data, path)
    return data


def _read_npz(path: Path, limit: int | None) -> JetData:
    rows = slice(None, limit)
    try:
        with np.load(path, allow_pickle=False) as store:
            missing = [key for key in ("momenta", "label") if key not in store.files]
            if missing:
                raise JetDataError(f"{path}: missing array {missing[0]!r}")
            arrays = {key: store[key] for key in store.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, JetDataError):
            raise
        raise JetDataError(f"{path}: unreadable npz ({error})") from None
    momenta = _momenta(arrays["momenta"], path)[rows]
    jet = arrays.get("jet")
    return JetData(
        momenta=momenta,
        label=np.asarray(arrays["label"])[rows].astype(np.int64, copy=False),
        jet=(momenta.sum(axis=1, dtype=np.float64) if jet is None else jet[rows]),
        pid=arrays["pid"][rows] if "pid" in arrays else None,
        charge=arrays["charge"][rows] if "charge" in arrays else None,
        truth=arrays["truth"][rows] if "truth" in arrays else None,
        metadata={key[5:]: _scalar(value) for key, value in arrays.items() if key[:5] == "meta_"},
    )


def _scalar(value: np.ndarray):
    return value.item() if value.ndim == 0 else value


def _momenta(array, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 4:
        raise JetDataError(
            f"{path}: momenta has shape {tuple(array.shape)}, expected (jets, constituents, 4)"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise JetDataError(f"{path}: momenta has non-numeric dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def _read_landscape(path: Path, limit: int | None) -> JetData:
    import h5py

    rows = slice(None, limit)
    try:
        with h5py.File(path, "r") as store:
            if "table" not in store or not isinstance(store["table"], h5py.Group):
                raise JetDataError(
                    f"{path}: no 'table' group (expected the top-tagging landscape layout)"
                )
            columns = _landscape_columns(store["table"], path, rows)
    except OSError as error:
        raise JetDataError(f"{path}: unreadable HDF5 ({error})") from None
    indices = sorted(
        int(match.group(1)) for name in columns if (match := re.fullmatch(r"E_(\d+)", name))
    )
    if not indices:
        raise JetDataError(f"{path}: no constituent columns E_0, PX_0, ... in 'table'")
    if indices != list(range(len(indices))):
        raise JetDataError(f"{path}: constituent columns are not numbered 0..{len(indices) - 1}")
    for i in indices:
        for component in _COMPONENTS:
            if f"{component}_{i}" not in columns:
                raise JetDataError(f"{path}: column {component}_{i} is missing")
    if "is_signal_new" not in columns:
        raise JetDataError(f"{path}: no 'is_signal_new' column (the labels)")
    momenta = np.stack(
        [
            np.stack([columns[f"{component}_{i}"] for component in _COMPONENTS], axis=-1)
            for i in indices
        ],
        axis=1,
    ).astype(np.float32)
    truth = None
    if all(f"truth{c}" in columns for c in _COMPONENTS):
        truth = np.stack([columns[f"truth{c}"] for c in _COMPONENTS], axis=-1).astype(np.float64)
    metadata: dict[str, object] = {"source": "top-tagging landscape HDF5"}
    if "ttv" in columns:
        metadata["ttv"] = columns["ttv"].astype(np.int64)
    return JetData(
        momenta=momenta,
        label=columns["is_signal_new"].astype(np.int64),
        jet=momenta.sum(axis=1, dtype=np.float64),
        truth=truth,
        metadata=metadata,
    )


def _landscape_columns(table, path: Path, rows: slice) -> dict[str, np.ndarray]:
    """Columns of a pandas "fixed" frame: ``block{k}_items`` names the columns of
    ``block{k}_values``, stored [rows, items] (pandas writes it transposed)."""
    columns: dict[str, np.ndarray] = {}
    k = 0
    while f"block{k}_items" in table and f"block{k}_values" in table:
        names = [_name(item) for item in table[f"block{k}_items"][()]]
        values = table[f"block{k}_values"]
        if values.ndim != 2 or len(names) not in values.shape:
            raise JetDataError(
                f"{path}: table/block{k}_values has shape {values.shape}, "
                f"expected (jets, {len(names)})"
            )
        if values.shape[1] == len(names):
            block = values[rows]
        else:  # stored [items, rows]
            block = values[:, rows].T
        for j, name in enumerate(names):
            columns[name] = np.asarray(block[:, j])
        k += 1
    if k == 0:
        raise JetDataError(f"{path}: 'table' has no block0_items/block0_values (pandas fixed)")
    return columns


def _name(item) -> str:
    return item.decode() if isinstance(item, bytes) else str(item)


def _check(data: JetData, path: Path) -> None:
    n = len(data)
    if n == 0:
        raise JetDataError(f"{path}: holds no jets")
    if data.label.shape != (n,):
        raise JetDataError(
            f"{path}: label has shape {tuple(data.label.shape)}, expected ({n},) for {n} jets"
        )
    if not np.isin(data.label, (0, 1)).all():
        raise JetDataError(f"{path}: labels must be 0 (QCD) or 1 (top)")
    expected = {"jet": (n, 4), "truth": (n, 4)}
    expected.update(dict.fromkeys(("pid", "charge"), data.momenta.shape[:2]))
    for name, shape in expected.items():
        value = getattr(data, name)
        if value is not None and tuple(value.shape) != shape:
            raise JetDataError(f"{path}: {name} has shape {tuple(value.shape)}, expected {shape}")
    finite = np.isfinite(data.momenta).all(axis=(1, 2))
    if not finite.all():
        raise JetDataError(f"{path}: jet {int(np.argmin(finite))} has NaN or infinite momenta")
    empty = ~(data.momenta != 0).any(axis=(1, 2))
    if empty.any():
        raise JetDataError(
            f"{path}: jet {int(np.argmax(empty))} has no constituents "
            f"({int(empty.sum())} empty jet(s) in all)"
        )
