import pytest
import torch

import equiscope as eq
from _models import orbit, unit_points

SPHERE_CASES = [
    ("1", lambda x, y, z: torch.ones_like(x), 0, 1.0),
    ("x", lambda x, y, z: x, 1, 1 / 3),
    ("xy", lambda x, y, z: x * y, 2, 1 / 15),
    ("xyz", lambda x, y, z: x * y * z, 3, 1 / 105),
]


@pytest.fixture(scope="module")
def o3_grid():
    return eq.grid("lebedev", degree=8, inversion=True)


@pytest.mark.parametrize(("name", "function", "lam", "norm"), SPHERE_CASES)
def test_analytic_sectors_on_the_sphere(o3_grid, generator, name, function, lam, norm):
    points = unit_points(40, generator)
    u = function(*orbit(points, o3_grid.rotations).unbind(-1))  # [n_grid, 40]
    spec = eq.spectrum(u, o3_grid, max_lambda=4)
    per_point = eq.sector_norms(u, o3_grid, max_lambda=4)[1]  # [sectors, 40]
    sectors = o3_grid.group.sectors(4)
    expected = per_point[sectors.index((lam, 1))]
    # the integral over the orbit of any point is the sphere average: 1/(2l+1) etc.
    assert torch.allclose(expected, torch.full_like(expected, norm), atol=1e-12, rtol=0)
    for sector, value in spec.items():
        if sector != (lam, 1):
            assert abs(value) < 1e-12, (name, sector, value)
    assert abs(spec.total - sum(spec.values())) < 1e-12
    assert spec.labelled()[f"{lam},1"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("name", "function", "lam", "norm"), SPHERE_CASES)
def test_pseudoscalar_flips_sigma(o3_grid, generator, name, function, lam, norm):
    points = unit_points(3, generator)
    frames = orbit(points, o3_grid.rotations)  # [n_grid, 3, 3]
    pseudoscalar = torch.linalg.det(frames)  # changes sign under inversion
    scale = float(torch.linalg.det(points)) ** 2
    probe = unit_points(1, generator)
    u = function(*orbit(probe, o3_grid.rotations).unbind(-1))[:, 0] * pseudoscalar
    spec = eq.spectrum(u, o3_grid, max_lambda=4)
    assert spec[(lam, -1)] == pytest.approx(norm * scale, rel=1e-12)
    for sector, value in spec.items():
        if sector != (lam, -1):
            assert abs(value) < 1e-12 * max(scale, 1.0)


def test_spectrum_without_inversion_does_not_resolve_parity(generator):
    grid = eq.grid("lebedev", degree=6)
    points = unit_points(5, generator)
    u = orbit(points, grid.rotations)[..., 0]
    spec = eq.spectrum(u, grid, max_lambda=3)
    assert set(spec) == {(0, 0), (1, 0), (2, 0), (3, 0)}
    assert spec[(1, 0)] == pytest.approx(5 / 3, rel=1e-12)
    assert eq.sector_label((1, 0)) == "1"


@pytest.mark.parametrize("m", [0, 1, 2, 3])
def test_so2_fourier_modes(m, generator):
    grid = eq.grid("so2", n=9)
    points = unit_points(6, generator)
    rotated = orbit(points, grid.rotations)
    phi = torch.atan2(rotated[..., 1], rotated[..., 0])
    u = torch.cos(m * phi) + 0.5 * torch.sin(m * phi)
    spec = eq.spectrum(u, grid, max_lambda=4)
    expected = 6 * (1.0 if m == 0 else (1 + 0.25) / 2)
    assert spec[(m, 0)] == pytest.approx(expected, rel=1e-12)
    assert sum(v for k, v in spec.items() if k != (m, 0)) < 1e-12
    assert list(spec.labelled())[m] == str(m)


def test_o2_reflections_split_the_trivial_mode(generator):
    grid = eq.grid("o2", n=9)
    rotated = orbit(unit_points(4, generator), grid.rotations)
    phi = torch.atan2(rotated[..., 1], rotated[..., 0])
    odd = torch.sin(3 * phi) * torch.sin(phi)  # even under phi -> -phi: cos 2 phi, cos 4 phi
    spec = eq.spectrum(odd, grid, max_lambda=4)
    assert spec[(2, 0)] + spec[(4, 0)] == pytest.approx(spec.total, rel=1e-12)
    sign = torch.sin(3 * phi)  # odd under reflection, m = 3
    spec = eq.spectrum(sign, grid, max_lambda=4)
    assert spec[(3, 0)] == pytest.approx(spec.total, rel=1e-12)
    assert spec[(0, -1)] < 1e-12


def test_independent_of_batch_shape_and_ordering(o3_grid, generator):
    points = unit_points(12, generator)
    rotated = orbit(points, o3_grid.rotations)
    u = rotated[..., 0] * rotated[..., 1] + rotated[..., 2] ** 3
    full = eq.spectrum(u, o3_grid, max_lambda=4)
    halves = [eq.spectrum(part, o3_grid, max_lambda=4) for part in u.split(6, dim=1)]
    for sector in full:
        assert full[sector] == pytest.approx(sum(h[sector] for h in halves), rel=1e-12, abs=1e-14)
    reshaped = eq.spectrum(u.reshape(-1, 3, 4), o3_grid, max_lambda=4)
    permutation = torch.randperm(o3_grid.size, generator=generator)
    shuffled_grid = eq.Grid(
        "shuffled",
        o3_grid.group,
        o3_grid.rotations[permutation],
        o3_grid.weights[permutation],
        check_degree=10,
    )
    shuffled = eq.spectrum(u[permutation], shuffled_grid, max_lambda=4)
    for sector in full:
        assert reshaped[sector] == pytest.approx(full[sector], rel=1e-12, abs=1e-14)
        assert shuffled[sector] == pytest.approx(full[sector], rel=1e-12, abs=1e-14)


def test_incomplete_spectrum_warns(o3_grid, generator):
    rotated = orbit(unit_points(3, generator), o3_grid.rotations)
    u = rotated[..., 0] * rotated[..., 1] * rotated[..., 2]  # lambda = 3
    with pytest.warns(eq.SpectrumIncompleteWarning, match="content above max_lambda"):
        spec = eq.spectrum(u, o3_grid, max_lambda=2)
    assert spec.residual == pytest.approx(3 / 105, rel=1e-10)


@pytest.mark.parametrize(
    ("responses", "max_lambda", "message"),
    [
        (torch.zeros(10), 2, "has 684 elements"),
        (torch.full((684, 2), float("nan")), 2, "NaN"),
        (torch.zeros(684), 5, "beyond what grid 'lebedev' resolves"),
        (torch.zeros(684), -1, "non-negative integer"),
        (torch.zeros(684, dtype=torch.complex128), 1, "real"),
    ],
)
def test_bad_input(o3_grid, responses, max_lambda, message):
    with pytest.raises(ValueError, match=message):
        eq.spectrum(responses, o3_grid, max_lambda=max_lambda)


def test_streaming_batches_equal_one_shot(o3_grid, generator):
    rotated = orbit(unit_points(5, generator), o3_grid.rotations)
    u = rotated[..., 0] * rotated[..., 2] + rotated[..., 1]
    full = eq.spectrum(u, o3_grid, max_lambda=4)
    accumulator = eq.SpectrumAccumulator(o3_grid, 4)
    starts = list(range(0, o3_grid.size, 100))
    for start in reversed(starts):
        accumulator.add(u[start : start + 100], start)
    streamed = accumulator.spectrum()
    for sector in full:
        assert streamed[sector] == pytest.approx(full[sector], rel=1e-12, abs=1e-14)
    assert streamed.total == pytest.approx(full.total, rel=1e-12)


def test_streaming_needs_every_element_once(o3_grid):
    accumulator = eq.SpectrumAccumulator(o3_grid, 2)
    accumulator.add(torch.ones(100, 3), 0)
    with pytest.raises(ValueError, match="584 missing"):
        accumulator.norms()
    accumulator.add(torch.ones(684, 3), 0)
    with pytest.raises(ValueError, match="100 added more than once"):
        accumulator.spectrum()
    with pytest.raises(ValueError, match="trailing shape"):
        accumulator.add(torch.ones(4, 2), 0)
    with pytest.raises(ValueError, match="do not fit grid"):
        accumulator.add(torch.ones(4, 3), 682)
