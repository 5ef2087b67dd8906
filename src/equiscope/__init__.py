"""equiscope: measure and control the rotational symmetry of unconstrained models.

The core is group-generic: a :class:`Grid` of group elements with weights and
computed exactness, responses of a model evaluated on it, and metrics from them
(the equivariance error A, the symmetrised output Pi, the character spectrum B).
"""

from .grids import GRID_NAMES, Grid, grid
from .groups import (
    Group,
    finite_group,
    irrep_matrices,
    sector_label,
    wigner_d,
    wigner_generators,
)
from .metrics import (
    ConvergenceCheck,
    GridConvergenceWarning,
    Spectrum,
    SpectrumAccumulator,
    SpectrumIncompleteWarning,
    back_transform,
    check_convergence,
    equivariance_variance,
    error_decomposition,
    noise_floor,
    pooled_rmse,
    refine,
    sector_norms,
    spectrum,
    symmetrize,
)
from .spherical import (
    cartesian_to_spherical,
    spherical_to_cartesian,
    tensormap_to_cartesian,
    tensormap_to_spherical,
)

__version__ = "0.1.0"

__all__ = [
    "GRID_NAMES",
    "ConvergenceCheck",
    "Grid",
    "GridConvergenceWarning",
    "Group",
    "Spectrum",
    "SpectrumAccumulator",
    "SpectrumIncompleteWarning",
    "back_transform",
    "cartesian_to_spherical",
    "check_convergence",
    "equivariance_variance",
    "error_decomposition",
    "finite_group",
    "grid",
    "irrep_matrices",
    "noise_floor",
    "pooled_rmse",
    "refine",
    "sector_label",
    "sector_norms",
    "spectrum",
    "spherical_to_cartesian",
    "symmetrize",
    "tensormap_to_cartesian",
    "tensormap_to_spherical",
    "wigner_d",
    "wigner_generators",
]
