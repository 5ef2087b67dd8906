"""The default audit's estimator: unbiased A and spectra from randomly oriented grids,
with a 95 % interval that covers the true value, through the whole engine.

Known answer: a scalar output F(g x) = a P_2(z . g x) + b P_6(z . g x) + c of a unit
vector x. Over O(3) its mean is c and its variance A^2 = a^2 / 5 + b^2 / 13 (the mean
of P_l^2 on the sphere is 1 / (2 l + 1)); its spectrum is (0,1): c^2, (2,1): a^2 / 5,
(6,1): b^2 / 13 of the total. Both bases tested, the default (octahedral rotations,
each replicate inverted with probability 1/2) and the icosahedral group with explicit
inversion, average out lambda = 2 but not 6, so the estimate of A is noisy and its
interval has something to cover.
"""

import math

import pytest
import torch

import equiscope as eq
from equiscope.audit import OrbitResult, OutputKind, run_audit

A, B, C = 0.3, 0.5, 1.0
TRUE_A = math.sqrt(A**2 / 5 + B**2 / 13)


def legendre(degree: int, x: torch.Tensor) -> torch.Tensor:
    return torch.special.legendre_polynomial_p(x, degree)


class Planted:
    """A synthetic adapter: samples are unit vectors, the model is F above."""

    source = "planted P2 + P6"
    dtype = torch.float64
    words = {"sample": "vector", "samples": "vectors"}  # noqa: RUF012
    layers: list = []  # noqa: RUF012

    def outputs(self, samples, requested):
        return ["energy"]

    def size(self, sample):
        return 1

    def evaluate(self, sample, grid, *, outputs, layers=(), max_lambda=None):
        z = (grid.rotations @ sample)[:, 2]
        values = A * legendre(2, z) + B * legendre(6, z) + C
        kind = OutputKind("scalar", per_structure=True, extensive=False)
        return OrbitResult({"energy": values[:, None, None]}, {"energy": kind})

    def jittered(self, sample, eps, generator):
        return sample + eps * torch.randn(3, generator=generator, dtype=torch.float64)

    def reference(self, sample, name):
        return None

    def unit(self, name):
        return "eV"


def samples(n: int) -> list[torch.Tensor]:
    vectors = torch.randn(n, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return list(vectors / vectors.norm(dim=1, keepdim=True))


BASES = {
    "default": None,
    "icosahedral+inversion": eq.grid("icosahedral", inversion=True),
}


def audit(seed: int, n: int = 3, base: str = "default", **options) -> dict:
    report = run_audit(
        Planted(), samples(n), progress=False, seed=seed, estimate_grid=BASES[base], **options
    )
    return report["outputs"]["energy"]


@pytest.mark.parametrize("base", BASES)
def test_the_estimate_is_unbiased_and_reports_only_resolved_sectors(base):
    runs = [audit(seed, base=base, max_lambda=6) for seed in range(20)]
    a2 = sum(r["equivariance_rmse"] ** 2 for r in runs) / len(runs)
    assert a2 == pytest.approx(TRUE_A**2, rel=0.05)
    total = C**2 + A**2 / 5 + B**2 / 13
    # (2,1) itself is exact (the grid averages it out); its fraction of the estimated
    # total is not, since the total's estimate carries the lambda = 6 noise
    two = torch.tensor([r["spectrum"]["2,1"] for r in runs])
    error = float(two.std() / math.sqrt(len(two)))
    assert abs(float(two.mean()) - A**2 / 5 / total) < 4 * error
    for run in runs:
        assert run["spectrum"]["1,1"] < 1e-20  # no content there: round-off at most
        # (6,1) is reported only when its interval excludes zero, and then covers it
        six, half = run["spectrum"]["6,1"], run["spectrum_ci95_half_width"]["6,1"]
        assert six == 0.0 or abs(six - B**2 / 13 / total) <= 2 * half


def test_replicate_spectra_are_unbiased_at_every_degree():
    """The raw sector estimates of randomly oriented icosahedral grids average to the
    exact spectrum, lambda = 6 included (which the grid does not resolve)."""
    from equiscope.metrics.replicates import ReplicateEstimate, haar_elements, oriented

    base = eq.grid("icosahedral", inversion=True)
    x = samples(1)[0]
    estimates = []
    for seed in range(200):
        estimate = ReplicateEstimate("scalar", 6)
        for element in haar_elements(4, torch.Generator().manual_seed(seed), improper=True):
            grid = oriented(base, element)
            estimate.add(Planted().evaluate(x, grid, outputs=["energy"]).responses["energy"], grid)
        estimates.append(estimate.estimate())
    six = torch.tensor([e.sectors[(6, 1)] for e in estimates])
    error = float(six.std() / math.sqrt(len(six)))
    assert abs(float(six.mean()) - B**2 / 13) < 4 * error
    total = torch.tensor([e.total for e in estimates])
    error = float(total.std() / math.sqrt(len(total)))
    assert abs(float(total.mean()) - (C**2 + A**2 / 5 + B**2 / 13)) < 4 * error


@pytest.mark.parametrize("base", BASES)
def test_the_interval_covers_the_true_value(base):
    covered = []
    for seed in range(60):
        low, high = audit(seed, base=base)["equivariance_rmse_ci95"]
        covered.append(low <= TRUE_A <= high)
    assert sum(covered) / len(covered) >= 0.9


@pytest.mark.parametrize("base", BASES)
def test_the_interval_shrinks_with_more_replicates(base):
    widths = {}
    for k in (4, 16):
        runs = [audit(seed, base=base, replicates=k, max_replicates=k) for seed in range(10)]
        widths[k] = sum(r["estimate"]["relative_half_width"] for r in runs) / len(runs)
        assert all(r["estimate"]["replicates"] == [k, k] for r in runs)
    assert widths[16] < 0.7 * widths[4]  # ~ 1 / sqrt(k): 0.5 expected


@pytest.mark.parametrize("base", BASES)
def test_replicates_are_added_until_the_precision_is_reached(base):
    loose = audit(0, base=base, precision=10.0)
    tight = audit(0, base=base, precision=0.1, max_replicates=400)
    assert loose["estimate"]["replicates"] == [3, 3]
    assert tight["estimate"]["replicates"][0] > 3
    assert tight["estimate"]["relative_half_width"] <= 0.1
    assert tight["converged"] is True


def test_the_same_seed_gives_the_same_report():
    assert audit(3) == audit(3)
    assert audit(3)["equivariance_rmse"] != audit(4)["equivariance_rmse"]


def test_a_fixed_coarse_grid_says_what_it_misses():
    """The octahedral grid resolves products up to lambda = 1 only: the spectrum is
    a fraction of the total and the rest is reported above max lambda."""
    report = run_audit(
        Planted(), samples(3), grid=eq.grid("octahedral", inversion=True), progress=False
    )
    out = report["outputs"]["energy"]
    assert out["equivariance_rmse_ci95"] is None
    assert sum(out["spectrum"].values()) + out["above_max_lambda"] == pytest.approx(1.0)
    assert out["above_max_lambda"] > 0.01


def test_bad_estimate_options_are_refused():
    from equiscope.audit import AuditOptionError

    with pytest.raises(AuditOptionError, match="replicates must be at least 3"):
        audit(0, replicates=2)
    with pytest.raises(AuditOptionError, match="precision must be positive"):
        audit(0, precision=0.0)
