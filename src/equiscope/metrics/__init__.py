"""Symmetry metrics from responses evaluated on a grid: Pi, A^2 and B."""

from .convergence import (
    ConvergenceCheck,
    GridConvergenceWarning,
    check_convergence,
    refine,
)
from .equivariance import (
    back_transform,
    equivariance_variance,
    error_decomposition,
    noise_floor,
    pooled_rmse,
    symmetrize,
)
from .spectrum import (
    Spectrum,
    SpectrumAccumulator,
    SpectrumIncompleteWarning,
    sector_norms,
    spectrum,
)

__all__ = [
    "ConvergenceCheck",
    "GridConvergenceWarning",
    "Spectrum",
    "SpectrumAccumulator",
    "SpectrumIncompleteWarning",
    "back_transform",
    "check_convergence",
    "equivariance_variance",
    "error_decomposition",
    "noise_floor",
    "pooled_rmse",
    "refine",
    "sector_norms",
    "spectrum",
    "symmetrize",
]
