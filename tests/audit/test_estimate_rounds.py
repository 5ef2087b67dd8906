"""How the default audit spends its evaluations: the base grid (proper rotations, a
random inversion per replicate), rounds that add replicates only to the outputs still
short of precision, and the projection of how many replicates that takes."""

import math

import pytest
import torch

import equiscope as eq
from equiscope.audit import AuditOptionError, OrbitResult, OutputKind, estimate_base, run_audit
from equiscope.audit._estimate import more_replicates
from equiscope.metrics.replicates import interval


def test_the_default_base_is_proper_rotations_of_an_o3_audit():
    base = estimate_base()
    assert base.group.name == "O(3)" and base.size == 24
    assert bool((torch.linalg.det(base.rotations) > 0).all())
    assert estimate_base("icosahedral").size == 60
    assert estimate_base(inversion=False).group.name == "SO(3)"


class TwoOutputs:
    """``exact`` is invariant (A = 0 exactly); ``noisy`` = P_6(z . g x) has A = 1/sqrt(13)
    that no base grid averages out. Records which outputs every replicate asks for and
    whether its elements are proper or improper."""

    source = "two outputs"
    dtype = torch.float64
    words = {"sample": "vector", "samples": "vectors"}  # noqa: RUF012
    layers: list = []  # noqa: RUF012

    def __init__(self):
        self.calls: list[tuple[str, ...]] = []
        self.determinants: list[float] = []

    def outputs(self, samples, requested):
        return ["exact", "noisy"]

    def size(self, sample):
        return 1

    def evaluate(self, sample, grid, *, outputs, layers=(), max_lambda=None):
        if grid.size > 1:
            self.calls.append(tuple(outputs))
        signs = torch.linalg.det(grid.rotations).round()
        if grid.size > 1:  # a replicate, not the round-off probe
            self.determinants.append(float(signs.mean()))
        z = (grid.rotations @ sample)[:, 2]
        values = {
            "exact": torch.ones_like(z) * float(sample.norm()),
            "noisy": torch.special.legendre_polynomial_p(z, 6),
        }
        kind = OutputKind("scalar", per_structure=True, extensive=False)
        return OrbitResult(
            {name: values[name][:, None, None] for name in outputs},
            dict.fromkeys(outputs, kind),
        )

    def jittered(self, sample, eps, generator):
        return sample + eps * torch.randn(3, generator=generator, dtype=torch.float64)

    def reference(self, sample, name):
        return None

    def unit(self, name):
        return "eV"


def test_later_rounds_evaluate_only_the_outputs_short_of_precision():
    adapter = TwoOutputs()
    x = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    report = run_audit(adapter, [x], progress=False, precision=0.1, max_replicates=200)
    noisy, exact = report["outputs"]["noisy"], report["outputs"]["exact"]
    assert exact["estimate"]["replicates"] == [3, 3]  # below its floor after round one
    assert noisy["estimate"]["replicates"][0] > 3
    assert noisy["converged"] is True
    assert adapter.calls[:3] == [("exact", "noisy")] * 3  # the first round: both
    assert len(adapter.calls) > 3
    assert all(c == ("noisy",) for c in adapter.calls[3:])
    assert math.isclose(
        noisy["equivariance_rmse"], 1 / math.sqrt(13), rel_tol=3 * noisy["estimate"]["target"]
    )
    # every replicate is proper or inverted as a whole, about half of them inverted
    # (binomial: within 5 sd of the half)
    assert all(abs(d) == 1.0 for d in adapter.determinants)
    n = len(adapter.determinants)
    inverted = sum(d < 0 for d in adapter.determinants)
    assert abs(inverted - n / 2) <= 5 * math.sqrt(n) / 2


class Pooled:
    """A stand-in for one output's statistics: pooled A^2 with a given variance."""

    def __init__(self, a2, variance, n, k):
        self.a2, self.variance, self.n, self.k = a2, variance, n, k
        self.records = [None] * n

    def pooled(self):
        return self.a2, self.variance, self.n * (self.k - 1)

    def summary_precision(self, dtype):
        low, high = interval(self.a2, self.variance, self.n * (self.k - 1))
        a = math.sqrt(self.a2)
        return (high - low) / 2 / a


@pytest.mark.parametrize("n", [1, 24])
def test_the_projection_uses_the_degrees_of_freedom_it_will_have(n):
    """From 3 replicates of one sample (t = 4.3) the current quantile alone would ask
    for ~ (4.3 / 2)^2 = 4.6 times too many; the projection asks for the fewest K whose
    interval, at K's degrees of freedom, is within the precision."""
    stats = {"energy": Pooled(a2=1.0, variance=0.04, n=n, k=3)}
    extra = more_replicates(stats, {"energy": 3}, 0.1, torch.float64, 10_000)["energy"]
    total = 3 + extra
    # degrees of freedom: 3 - 1 of the first round, total - 3 - 1 of the next
    low, high = interval(1.0, 0.04 * 3 / total, n * (total - 2))
    assert (high - low) / 2 <= 0.1
    low, high = interval(1.0, 0.04 * 3 / (total - 1), n * (total - 3))
    assert total == 6 or (high - low) / 2 > 0.1  # the fewest (a round adds >= 3)
    naive = 3 * (stats["energy"].summary_precision(torch.float64) / 0.1) ** 2
    if n == 1:
        assert total < naive / 3


def test_no_room_or_enough_precision_adds_nothing():
    stats = {"energy": Pooled(a2=1.0, variance=0.04, n=1, k=3)}
    assert more_replicates(stats, {"energy": 3}, 0.1, torch.float64, 5) == {"energy": 0}
    assert more_replicates(stats, {"energy": 3}, 10.0, torch.float64, 100) == {"energy": 0}


def test_a_user_base_with_explicit_inversion_is_still_accepted():
    adapter = TwoOutputs()
    x = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    report = run_audit(
        adapter,
        [x],
        progress=False,
        precision=10.0,
        estimate_grid=eq.grid("octahedral", inversion=True),
    )
    assert report["grid"]["size"] == 48
    assert all(d == 0.0 for d in adapter.determinants)  # half of every replicate inverted
    assert report["outputs"]["noisy"]["estimate"]["replicates"] == [3, 3]


def test_the_automatic_base_follows_the_number_of_samples():
    """Few samples: the icosahedral group (precision per copy is the cost); many: the
    octahedral group (the 3 replicates per sample are)."""
    assert estimate_base("auto", samples=1).size == 60
    assert estimate_base("auto", samples=2).name == "icosahedral"
    assert estimate_base("auto", samples=3).name == "octahedral"
    assert estimate_base("auto", samples=3, inversion=False).group.name == "SO(3)"
    with pytest.raises(ValueError, match="needs the number of samples"):
        estimate_base("auto")
    with pytest.raises(AuditOptionError, match="estimate grid 'lebedev': expected auto"):
        run_audit(TwoOutputs(), [torch.ones(3)], progress=False, estimate_grid="lebedev")
    x = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    one = run_audit(TwoOutputs(), [x], progress=False, precision=10)
    assert one["grid"]["name"] == "icosahedral" and one["grid"]["group"] == "O(3)"
    many = run_audit(TwoOutputs(), [x] * 3, progress=False, precision=10, inversion=False)
    assert many["grid"]["name"] == "octahedral" and many["grid"]["group"] == "SO(3)"


class Blocks(TwoOutputs):
    """One requested output, ``tensor``, answered as two labelled blocks (as a
    multi-block metatensor output is): ``tensor[block=0]`` invariant, ``tensor[block=1]``
    the noisy P_6. Refuses any output name it does not offer."""

    def outputs(self, samples, requested):
        return ["tensor"]

    def evaluate(self, sample, grid, *, outputs, layers=(), max_lambda=None):
        assert list(outputs) == ["tensor"], outputs
        result = super().evaluate(sample, grid, outputs=["exact", "noisy"])
        labels = {"exact": "tensor[block=0]", "noisy": "tensor[block=1]"}
        return OrbitResult(
            {labels[k]: v for k, v in result.responses.items()},
            {labels[k]: v for k, v in result.kinds.items()},
        )


def test_blocks_of_one_output_are_refined_through_their_output():
    adapter = Blocks()
    x = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    report = run_audit(adapter, [x], progress=False, precision=0.1, max_replicates=200)
    noisy, exact = report["outputs"]["tensor[block=1]"], report["outputs"]["tensor[block=0]"]
    assert noisy["estimate"]["replicates"][0] > 3 and noisy["converged"] is True
    assert exact["estimate"]["replicates"] == [3, 3]  # the sibling is not absorbed again


def test_a_single_sample_refines_on_the_octahedral_group():
    """``auto`` with one sample: the first round on the icosahedral group (60), the
    later ones on the octahedral group (24); the report says so."""
    sizes = []

    class Sized(TwoOutputs):
        def evaluate(self, sample, grid, *, outputs, layers=(), max_lambda=None):
            if grid.size > 1:
                sizes.append(grid.size)
            return super().evaluate(sample, grid, outputs=outputs)

    x = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    report = run_audit(Sized(), [x], progress=False, precision=0.1, max_replicates=200)
    assert sizes[:3] == [60, 60, 60] and len(sizes) > 3
    assert set(sizes[3:]) == {24}
    assert report["grid"]["name"] == "icosahedral"
    assert report["grid"]["refinement"] == {"name": "octahedral", "size": 24}
    assert report["grid"]["copies"] == 3 * 60 + 24 * (len(sizes) - 3)
    assert report["outputs"]["noisy"]["converged"] is True
