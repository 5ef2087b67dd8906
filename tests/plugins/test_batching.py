"""Copies per model call: memory budget, measured choice, out-of-memory retry."""

import pytest
import torch

import equiscope as eq
from _models import EmbeddedAtoms, atomistic, molecule
from equiscope_atoms import _batching, evaluate_orbit, wrap_model
from equiscope_atoms._batching import BatchPlanner, is_out_of_memory

MB = 2**20


def copper_system():
    import ase.build
    from metatomic.torch import systems_to_torch

    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=0)
    atoms.set_chemical_symbols("C" * len(atoms))  # a type the test model knows
    return systems_to_torch(atoms, dtype=torch.float64)


def orbit(model, planner, grid=None):
    grid = eq.grid("octahedral", inversion=True) if grid is None else grid
    return evaluate_orbit(
        model,
        copper_system(),
        grid,
        outputs=["energy"],
        forces=True,
        stress=True,
        planner=planner,
    )


def assert_same(result, reference):
    assert result.responses.keys() == reference.responses.keys()
    for name, values in reference.responses.items():
        torch.testing.assert_close(result.responses[name], values, rtol=1e-12, atol=1e-12)


@pytest.fixture
def model():
    return wrap_model(atomistic(EmbeddedAtoms(anisotropy=0.3)))


class CallSizes:
    """Records the copies of every model call."""

    def __init__(self, model, monkeypatch, *, fail_above=None):
        self.sizes = []
        original = model.evaluate

        def evaluate(systems, outputs):
            if fail_above is not None and len(systems) > fail_above:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            self.sizes.append(len(systems))
            return original(systems, outputs)

        monkeypatch.setattr(model, "evaluate", evaluate)


def fake_device(monkeypatch, calls: CallSizes, *, per_copy: int, seconds):
    """The meter reports ``per_copy`` bytes per copy in the call; the clock advances
    by ``seconds(copies)`` per call."""
    now = [0.0]
    monkeypatch.setattr(_batching, "_clock", lambda: now[0])

    def measure(self, call):
        call()
        now[0] += seconds(calls.sizes[-1])
        return calls.sizes[-1] * per_copy

    monkeypatch.setattr(_batching._Meter, "measure", measure)
    monkeypatch.setattr(_batching._Meter, "current", lambda self: 0)


def test_a_budget_below_a_32_copy_batch_gives_several_calls_and_the_same_numbers(
    model, monkeypatch
):
    reference = orbit(model, BatchPlanner(batch_size=32))
    calls = CallSizes(model, monkeypatch)
    # calls cost a fixed 10 ms: larger batches are always faster per copy
    fake_device(monkeypatch, calls, per_copy=MB, seconds=lambda n: 0.01 + 1e-4 * n)
    planner = BatchPlanner(max_memory=10 * MB)
    result = orbit(model, planner)
    assert_same(result, reference)
    assert sum(calls.sizes) == 48 and len(calls.sizes) > 2
    # the largest power of two whose footprint fits 10 MB, and no call above it
    assert max(calls.sizes) == 8
    assert next(iter(planner.plans.values())).best == 8


def test_the_probe_keeps_one_copy_per_call_when_batches_are_slower_per_copy(model, monkeypatch):
    calls = CallSizes(model, monkeypatch)
    # no fixed cost, and a batch of n runs 10 % n slower per copy (cache misses)
    fake_device(monkeypatch, calls, per_copy=MB, seconds=lambda n: 0.1 * n * (1 + 0.1 * n))
    planner = BatchPlanner(max_memory=10**12)
    orbit(model, planner)
    assert next(iter(planner.plans.values())).best == 1
    # probed: 1 (x3), 2 (x3), then one copy per call
    assert calls.sizes == [1, 1, 1, 2, 2, 2] + [1] * 39


def test_slow_copies_are_not_batched_at_all(model, monkeypatch):
    calls = CallSizes(model, monkeypatch)
    # 3 s per copy: a call's fixed cost cannot be 3 % of it, so 2 copies are never tried
    fake_device(monkeypatch, calls, per_copy=MB, seconds=lambda n: 3.0 * n)
    orbit(model, BatchPlanner(max_memory=10**12))
    assert calls.sizes == [1] * 48


def test_the_choice_is_kept_for_the_next_structure_of_the_size(model, monkeypatch):
    calls = CallSizes(model, monkeypatch)
    fake_device(monkeypatch, calls, per_copy=MB, seconds=lambda n: 0.01 + 1e-4 * n)
    planner = BatchPlanner(max_memory=10 * MB)
    orbit(model, planner)
    calls.sizes.clear()
    orbit(model, planner)
    assert calls.sizes == [8] * 6


@pytest.mark.parametrize("proc", [True, False], ids=["VmHWM", "sampled"])
def test_the_meter_sees_the_peak_of_each_call(proc):
    """200 MB allocated and freed inside a call show in its peak, and only in its own."""
    import time

    meter = _batching._Meter(torch.device("cpu"))
    meter.proc = meter.proc and proc

    def big():
        values = torch.ones(50 * 2**20, dtype=torch.float32)  # 200 MiB, touched
        time.sleep(0.05)  # long enough for the sampling thread
        del values

    before = meter.current()
    assert meter.measure(big) - before > 190 * MB
    before = meter.current()
    assert meter.measure(lambda: torch.ones(10)) - before < 50 * MB


def test_out_of_memory_halves_the_batch_and_retries(model, monkeypatch):
    reference = orbit(model, BatchPlanner(batch_size=1))
    calls = CallSizes(model, monkeypatch, fail_above=5)
    planner = BatchPlanner(batch_size=32)
    result = orbit(model, planner)
    assert_same(result, reference)
    assert planner.batch_size == 4  # 32 -> 16 -> 8 -> 4
    assert max(calls.sizes) <= 5 and sum(calls.sizes) == 48


def test_out_of_memory_while_probing_caps_the_batch(model, monkeypatch):
    reference = orbit(model, BatchPlanner(batch_size=1))
    calls = CallSizes(model, monkeypatch, fail_above=3)
    fake_device(monkeypatch, calls, per_copy=1, seconds=lambda n: 0.01 + 1e-4 * n)
    planner = BatchPlanner(max_memory=10**12)
    assert_same(orbit(model, planner), reference)
    assert max(calls.sizes) == 2 and sum(calls.sizes) == 48


def test_out_of_memory_of_a_single_copy_is_raised(model, monkeypatch):
    CallSizes(model, monkeypatch, fail_above=0)
    with pytest.raises(torch.OutOfMemoryError):
        orbit(model, BatchPlanner())


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: ..."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_bad_planner_options_are_refused():
    with pytest.raises(ValueError, match="batch size must be at least 1, got 0"):
        BatchPlanner(batch_size=0)
    with pytest.raises(ValueError, match="memory budget must be positive, got -1"):
        BatchPlanner(max_memory=-1)


def test_default_budget_is_half_the_available_memory():
    import psutil

    budget = _batching.default_max_memory(torch.device("cpu"))
    available = psutil.virtual_memory().available
    assert 0.4 * available < budget < 0.6 * available


def test_a_molecule_orbit_is_the_same_with_any_planner():
    model = wrap_model(atomistic(EmbeddedAtoms(anisotropy=0.5)))
    system = molecule(torch.Generator().manual_seed(1))
    grid = eq.grid("icosahedral", inversion=True)
    options = dict(outputs=["energy"], forces=True)
    reference = evaluate_orbit(model, system, grid, batch_size=120, **options)
    automatic = evaluate_orbit(model, system, grid, **options)
    assert_same(automatic, reference)
