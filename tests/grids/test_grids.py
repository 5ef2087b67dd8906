import pytest
import torch
from metatomic.torch.o3._wigner import (
    build_packed_wigner_matrices,
    wigner_matrices_for_lambda,
)

import equiscope as eq


def independent_mean(grid, lam):
    """|sum_i w_i D^lam(g_i)| with metatomic's (independent) Wigner D."""
    packed = build_packed_wigner_matrices(grid.rotations, lam)
    d = wigner_matrices_for_lambda(packed, grid.size, lam)
    return float(torch.linalg.norm(torch.einsum("n,nab->ab", grid.weights, d)))


@pytest.mark.parametrize(
    ("name", "size", "averaged", "not_averaged", "exact_degree"),
    [
        ("tetrahedral", 12, {1, 2, 5}, {3, 4, 6}, 1),
        ("octahedral", 24, {1, 2, 3, 5, 7, 11}, {4, 6, 8, 9, 10, 12}, 1),
        ("icosahedral", 60, {1, 2, 3, 4, 5, 7, 8, 9, 11}, {6, 10, 12}, 2),
    ],
)
def test_finite_group_exactness(name, size, averaged, not_averaged, exact_degree):
    grid = eq.grid(name)
    assert grid.size == size
    assert set(grid.averages_out) == averaged
    assert grid.exact_degree == exact_degree
    for lam in range(1, 13):
        mean = independent_mean(grid, lam)
        assert (mean < 1e-10) == (lam in averaged), (lam, mean)
    assert not_averaged.isdisjoint(grid.averages_out)


def test_inversion_doubles_and_averages_pseudoscalars():
    grid = eq.grid("octahedral", inversion=True)
    assert grid.size == 48 and grid.group.name == "O(3)"
    assert torch.allclose(
        torch.linalg.det(grid.rotations[24:]), -torch.ones(24, dtype=torch.float64)
    )
    assert (0, -1) in grid.averaged_sectors
    assert grid.exact_degree == 1
    assert (0, -1) not in eq.grid("octahedral").group.sectors(2)


@pytest.mark.parametrize("degree", [2, 4, 6, 8])
def test_lebedev_exactness_is_computed(degree):
    grid = eq.grid("lebedev", degree=degree, inversion=True)
    assert grid.mean_exact_degree >= degree
    assert grid.exact_degree == grid.mean_exact_degree // 2 >= degree // 2
    assert abs(float(grid.weights.sum()) - 1.0) < 1e-14


def orthogonality_error(grid, max_lambda):
    """max | sum_i w_i D^l_ab D^l'_cd - delta_ll' delta_ac delta_bd / (2l+1) |."""
    worst = 0.0
    for l1 in range(max_lambda + 1):
        for l2 in range(max_lambda + 1):
            d1 = eq.wigner_d(l1, grid.rotations)
            d2 = eq.wigner_d(l2, grid.rotations)
            gram = torch.einsum("n,nab,ncd->abcd", grid.weights, d1, d2)
            expected = torch.zeros_like(gram)
            if l1 == l2:
                eye = torch.eye(2 * l1 + 1, dtype=torch.float64)
                expected = torch.einsum("ac,bd->abcd", eye, eye) / (2 * l1 + 1)
            worst = max(worst, float((gram - expected).abs().max()))
    return worst


@pytest.mark.parametrize("max_lambda", [2, 3, 4])
def test_wigner_orthogonality_needs_degree_2l(max_lambda):
    exact = eq.grid("lebedev", degree=2 * max_lambda)
    assert orthogonality_error(exact, max_lambda) < 1e-12
    too_coarse = eq.grid("lebedev", degree=2 * max_lambda - 1)
    assert orthogonality_error(too_coarse, max_lambda) > 1e-3
    assert too_coarse.exact_degree < max_lambda <= exact.exact_degree


def test_random_grid_is_seeded():
    a, b = eq.grid("random", n=20, seed=3), eq.grid("random", n=20, seed=3)
    c = eq.grid("random", n=20, seed=4)
    assert torch.equal(a.rotations, b.rotations)
    assert not torch.allclose(a.rotations, c.rotations)
    assert a.exact_degree == 0
    inverted = eq.grid("random", n=20, seed=3, inversion=True)
    assert inverted.size == 40 and inverted.group.name == "O(3)"


@pytest.mark.parametrize(("name", "size"), [("so2", 7), ("o2", 14)])
def test_axial_grids(name, size):
    grid = eq.grid(name, n=7)
    assert grid.size == size
    assert torch.allclose(grid.rotations[:, 2, 2], torch.ones(size, dtype=torch.float64))
    assert grid.exact_degree == 3
    assert set(range(1, 7)) <= set(grid.averages_out) and 7 not in grid.averages_out


def test_rotated_grid_keeps_exactness():
    grid = eq.grid("icosahedral", inversion=True)
    rotation = eq.grid("random", n=1, seed=9).rotations[0]
    moved = grid.rotated(rotation)
    assert not torch.allclose(moved.rotations, grid.rotations)
    fresh = eq.Grid("moved", moved.group, moved.rotations, moved.weights, check_degree=12)
    assert fresh.averages_out == grid.averages_out


def test_to_dict_for_reports():
    summary = eq.grid("lebedev", degree=8, inversion=True).to_dict()
    assert summary["name"] == "lebedev" and summary["size"] == 684
    assert summary["exact_degree"] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="hexagonal"), "unknown grid 'hexagonal'"),
        (dict(name="lebedev"), "needs degree="),
        (dict(name="lebedev", degree=0), "positive integer"),
        (dict(name="lebedev", degree=500), "degree must be in"),
        (dict(name="random"), "needs n="),
        (dict(name="random", n=-2), "positive integer"),
        (dict(name="so2", n=4, inversion=True), "no inversion"),
        (dict(name="octahedral", n_inplane=7), "n_inplane applies to grid 'lebedev' only"),
        (dict(name="lebedev", degree=3, n_inplane=0), "positive integer"),
    ],
)
def test_bad_grid_requests(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        eq.grid(name, **kwargs)


def test_grid_validates_its_inputs():
    group = eq.Group("SO(3)")
    eye = torch.eye(3, dtype=torch.float64)[None]
    with pytest.raises(ValueError, match="sum to 1"):
        eq.Grid("x", group, eye, torch.tensor([0.5], dtype=torch.float64), check_degree=1)
    with pytest.raises(ValueError, match="orthogonal"):
        eq.Grid("x", group, 2 * eye, torch.ones(1, dtype=torch.float64), check_degree=1)
    with pytest.raises(ValueError, match="improper"):
        eq.Grid("x", group, -eye, torch.ones(1, dtype=torch.float64), check_degree=1)


def test_identity_grid():
    grid = eq.Grid.identity()
    assert grid.size == 1 and grid.exact_degree == 0
    assert torch.equal(grid.rotations[0], torch.eye(3, dtype=torch.float64))


def _same_elements(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal as sets of 3x3 matrices (each element of a has a match in b and back)."""
    distance = (a[:, None] - b[None]).flatten(2).abs().amax(-1)
    return bool((distance.amin(1) < 1e-12).all() and (distance.amin(0) < 1e-12).all())


def test_leakage_known_answers():
    """A group average is the projector onto its invariants (leakage sqrt(k)); a
    Lebedev x K grid with K > L + 1 in-plane angles keeps only the m = 0 column, so it
    leaks the zonal harmonic's share of the cubic invariant: sqrt(7/12) at 4,
    sqrt(2)/4 at 6."""
    octahedral = eq.grid("octahedral", inversion=True)
    assert octahedral.leakage((4, 1)) == pytest.approx(1.0, abs=1e-12)
    assert octahedral.leakage((4, -1)) < 1e-12  # inversion pairs cancel
    assert octahedral.leakage((6, 1)) == pytest.approx(1.0, abs=1e-12)
    assert octahedral.leakage((12, 1)) == pytest.approx(2**0.5, abs=1e-12)  # 2 invariants
    assert octahedral.leakage((3, 1)) < 1e-12
    assert eq.grid("icosahedral", inversion=True).leakage((6, 1)) == pytest.approx(1.0)
    lebedev = eq.grid("lebedev", degree=3, n_inplane=7, inversion=True)
    assert lebedev.size == 84
    assert lebedev.leakage((4, 1)) == pytest.approx((7 / 12) ** 0.5, abs=1e-12)
    assert lebedev.leakage((6, 1)) == pytest.approx(2**0.5 / 4, abs=1e-12)
    assert lebedev.leakage((5, 1)) < 1e-12


def test_the_lebedev_grid_with_the_octahedral_groups_exactness_is_that_group():
    """metatomic-ase's SymmetrizedCalculator at l_max = L uses 2L + 1 in-plane angles;
    L + 1 give the same exactness, and at L = 3 that grid is O itself (48 elements)."""
    from metatomic_ase._symmetry import _get_quadrature

    minimal = eq.grid("lebedev", degree=3, inversion=True)
    assert minimal.size == 48 and minimal.averages_out == (1, 2, 3, 5)
    assert _same_elements(minimal.rotations, eq.grid("octahedral", inversion=True).rotations)
    rotations, weights = _get_quadrature(3, 7, True)  # what SymmetrizedCalculator uses
    theirs = torch.as_tensor(rotations, dtype=torch.float64)
    ours = eq.grid("lebedev", degree=3, n_inplane=7, inversion=True)
    assert _same_elements(ours.rotations, theirs)
    assert torch.allclose(ours.weights, torch.as_tensor(weights, dtype=torch.float64))
