"""Cartesian <-> spherical components, in metatomic's order and normalisation.

- scalar ``s``:  ``(0, +1)``: ``[s]``
- vector ``v``:  ``(1, +1)``: ``(v_y, v_z, v_x)``
- rank-2 ``T``:  ``(0, +1)`` trace ``tr T / sqrt 3``;
  ``(1, -1)`` antisymmetric part
  ``((T_xz - T_zx), (T_yx - T_xy), (T_zy - T_yz)) / sqrt 2``;
  ``(2, +1)`` symmetric traceless part
  ``((T_xy + T_yx) / sqrt 2, (T_yz + T_zy) / sqrt 2,
  (2 T_zz - T_xx - T_yy) / sqrt 6, (T_xz + T_zx) / sqrt 2, (T_xx - T_yy) / sqrt 2)``.

Each map is orthogonal (norms are kept) and transforms with the real Wigner D of
:func:`equiscope.groups.wigner_d`; the inverse is the transpose.
"""

from __future__ import annotations

import math

import torch

from .groups.group import Sector

__all__ = [
    "cartesian_to_spherical",
    "spherical_to_cartesian",
    "tensormap_to_cartesian",
    "tensormap_to_spherical",
]


def _rank2_basis() -> dict[Sector, torch.Tensor]:
    """Rows of the orthogonal 9x9 change of basis, acting on row-major ``T``."""
    s2, s3, s6 = math.sqrt(2.0), math.sqrt(3.0), math.sqrt(6.0)
    xx, xy, xz, yx, yy, yz, zx, zy, zz = range(9)

    def row(entries):
        r = torch.zeros(9, dtype=torch.float64)
        for index, value in entries:
            r[index] = value
        return r

    return {
        (0, 1): torch.stack([row([(xx, 1 / s3), (yy, 1 / s3), (zz, 1 / s3)])]),
        (1, -1): torch.stack(
            [
                row([(xz, 1 / s2), (zx, -1 / s2)]),
                row([(yx, 1 / s2), (xy, -1 / s2)]),
                row([(zy, 1 / s2), (yz, -1 / s2)]),
            ]
        ),
        (2, 1): torch.stack(
            [
                row([(xy, 1 / s2), (yx, 1 / s2)]),
                row([(yz, 1 / s2), (zy, 1 / s2)]),
                row([(zz, 2 / s6), (xx, -1 / s6), (yy, -1 / s6)]),
                row([(xz, 1 / s2), (zx, 1 / s2)]),
                row([(xx, 1 / s2), (yy, -1 / s2)]),
            ]
        ),
    }


_VECTOR_ORDER = [1, 2, 0]  # (x, y, z) -> (y, z, x)
_VECTOR_INVERSE = [2, 0, 1]


def cartesian_to_spherical(values: torch.Tensor, rank: int) -> dict[Sector, torch.Tensor]:
    """Split ``values`` (``[...]``, ``[..., 3]`` or ``[..., 3, 3]`` for rank 0, 1, 2)
    into ``{(lambda, sigma): [..., 2 lambda + 1]}``."""
    values = torch.as_tensor(values)
    if rank == 0:
        return {(0, 1): values[..., None]}
    if rank == 1:
        if values.shape[-1:] != (3,):
            raise ValueError(f"a vector needs a last dimension of 3, got {tuple(values.shape)}")
        return {(1, 1): values[..., _VECTOR_ORDER]}
    if rank == 2:
        if values.shape[-2:] != (3, 3):
            raise ValueError(
                f"a rank-2 tensor needs last dimensions (3, 3), got {tuple(values.shape)}"
            )
        flat = values.reshape(*values.shape[:-2], 9)
        return {key: flat @ basis.to(flat.dtype).T for key, basis in _rank2_basis().items()}
    raise ValueError(f"rank must be 0, 1 or 2, got {rank}")


def spherical_to_cartesian(blocks: dict[Sector, torch.Tensor], rank: int) -> torch.Tensor:
    """Inverse of :func:`cartesian_to_spherical`; missing sectors count as zero
    (at least one must be present)."""
    if not blocks:
        raise ValueError("no spherical blocks given")
    if rank == 0:
        return blocks[(0, 1)][..., 0]
    if rank == 1:
        return blocks[(1, 1)][..., _VECTOR_INVERSE]
    if rank == 2:
        basis = _rank2_basis()
        unknown = set(blocks) - set(basis)
        if unknown:
            raise ValueError(f"sectors {sorted(unknown)} do not occur in a rank-2 tensor")
        some = next(iter(blocks.values()))
        flat = torch.zeros(*some.shape[:-1], 9, dtype=some.dtype, device=some.device)
        for key, value in blocks.items():
            flat = flat + value @ basis[key].to(value.dtype)
        return flat.reshape(*flat.shape[:-1], 3, 3)
    raise ValueError(f"rank must be 0, 1 or 2, got {rank}")


def _cartesian_rank(block) -> int:
    names = [c.names[0] for c in block.components]
    if names == []:
        return 0
    if names == ["xyz"]:
        return 1
    if names == ["xyz_1", "xyz_2"]:
        return 2
    raise ValueError(f"block components {names} are not Cartesian ('xyz' or 'xyz_1', 'xyz_2')")


def tensormap_to_spherical(tensor):
    """A metatensor TensorMap with Cartesian blocks (no components, ``xyz``, or
    ``xyz_1, xyz_2``) as spherical blocks keyed by ``o3_lambda, o3_sigma`` with
    ``o3_mu`` components (metatomic's layout for spherical targets)."""
    from metatensor.torch import Labels, TensorBlock, TensorMap

    names = [n for n in tensor.keys.names if n != "_"]
    keys, blocks = [], []
    for key, block in tensor.items():
        prefix = [int(key[n]) for n in names]
        values = block.values  # [samples, *components, properties]
        moved = values.movedim(-1, 1)  # [samples, properties, *components]
        rank = _cartesian_rank(block)
        for (lam, sigma), part in cartesian_to_spherical(moved, rank).items():
            mu = torch.arange(-lam, lam + 1, dtype=torch.int32).reshape(-1, 1)
            blocks.append(
                TensorBlock(
                    values=part.movedim(1, -1).contiguous(),
                    samples=block.samples,
                    components=[Labels("o3_mu", mu.to(values.device))],
                    properties=block.properties,
                )
            )
            keys.append([*prefix, lam, sigma])
    key_values = torch.tensor(keys, dtype=torch.int32, device=tensor.keys.values.device)
    return TensorMap(Labels([*names, "o3_lambda", "o3_sigma"], key_values), blocks)


def tensormap_to_cartesian(tensor, rank: int):
    """Inverse of :func:`tensormap_to_spherical` for one Cartesian ``rank``: blocks
    sharing all keys but ``o3_lambda, o3_sigma`` are recombined."""
    from metatensor.torch import Labels, TensorBlock, TensorMap

    names = [n for n in tensor.keys.names if n not in ("o3_lambda", "o3_sigma")]
    groups: dict[tuple, dict] = {}
    for key, block in tensor.items():
        prefix = tuple(int(key[n]) for n in names)
        sector = (int(key["o3_lambda"]), int(key["o3_sigma"]))
        groups.setdefault(prefix, {})[sector] = block
    components = {
        0: [],
        1: [Labels("xyz", torch.arange(3, dtype=torch.int32).reshape(-1, 1))],
        2: [Labels(f"xyz_{i}", torch.arange(3, dtype=torch.int32).reshape(-1, 1)) for i in (1, 2)],
    }[rank]
    keys, blocks = [], []
    for prefix, sectors in groups.items():
        first = next(iter(sectors.values()))
        parts = {s: b.values.movedim(-1, 1) for s, b in sectors.items()}
        cartesian = spherical_to_cartesian(parts, rank)
        values = cartesian.movedim(1, -1) if rank else cartesian
        blocks.append(
            TensorBlock(
                values=values.contiguous(),
                samples=first.samples,
                components=[c.to(values.device) for c in components],
                properties=first.properties,
            )
        )
        keys.append(list(prefix) if names else [0])
    key_names = names if names else ["_"]
    key_values = torch.tensor(keys, dtype=torch.int32).reshape(len(keys), len(key_names))
    return TensorMap(Labels(key_names, key_values), blocks)
