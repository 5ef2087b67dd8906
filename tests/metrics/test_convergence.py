import math

import pytest
import torch

import equiscope as eq
from _models import orbit, unit_points


def sharp_response(grid, generator):
    """exp(k z): content at every lambda, decaying slowly for large k."""
    points = unit_points(4, generator)
    return torch.exp(3.0 * orbit(points, grid.rotations)[..., 2])


def test_band_limited_metric_converges(generator):
    points = unit_points(4, generator)

    def metric(grid):
        cos = orbit(points, grid.rotations)[..., 2]
        return eq.equivariance_variance(cos**2, grid, irrep="scalar")

    grids = [eq.grid("lebedev", degree=4), eq.grid("lebedev", degree=6)]
    check = eq.check_convergence(metric, grids)
    assert check.converged and check.relative_change < 1e-12
    # Var(cos^2) = <cos^4> - <cos^2>^2 = 1/5 - 1/9
    assert check.values[-1] == pytest.approx(4 * (1 / 5 - 1 / 9), rel=1e-12)
    assert check.to_dict()["converged"] is True


def test_unresolved_metric_warns(generator):
    def metric(grid):
        return eq.equivariance_variance(
            sharp_response(grid, torch.Generator().manual_seed(1)), grid, "scalar"
        )

    grids = [eq.grid("octahedral"), eq.grid("lebedev", degree=6)]
    with pytest.warns(eq.GridConvergenceWarning, match="above the 1.0% tolerance"):
        check = eq.check_convergence(metric, grids)
    assert not check.converged
    assert math.isfinite(check.relative_change) and check.relative_change > 0.01


def test_refine_makes_finer_grids():
    assert eq.refine(eq.grid("lebedev", degree=6, inversion=True)).parameters["degree"] == 8
    refined = eq.refine(eq.grid("icosahedral", inversion=True))
    assert refined.name == "lebedev" and refined.exact_degree > 2 and refined.group.name == "O(3)"
    assert eq.refine(eq.grid("random", n=10)).size == 20
    assert eq.refine(eq.grid("so2", n=5)).size == 10


def test_needs_two_grids():
    with pytest.raises(ValueError, match="at least two grids"):
        eq.check_convergence(lambda g: 0.0, [eq.grid("octahedral")])
