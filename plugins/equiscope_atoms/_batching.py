"""How many transformed copies go into one model call, chosen by measurement.

:class:`BatchPlanner` runs an evaluation of ``n`` copies as calls of ``b`` copies.
With no fixed ``batch_size`` it probes: calls of 1, 1, 2, 2, 4, 4, ... copies (each
size twice, the first call of a size pays for TorchScript's re-specialisation),
timing each and measuring the memory it needs, and keeps doubling while the time per
copy improves and the next size is predicted to fit in ``max_memory``. Every probed
call evaluates real copies, so probing wastes no evaluation. The chosen size is kept
per (atom-count bucket, outputs) and scaled down for larger structures of a bucket.

Memory of a call is its peak footprint above the process's footprint before the
first probe: on CUDA ``torch.cuda.max_memory_allocated``; on a CPU the resident set
high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` on Linux;
elsewhere a thread sampling the resident set). On an out-of-memory error the call is
retried with half the copies, down to one.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import threading
import time
from collections.abc import Callable, Hashable

import torch

__all__ = ["BatchPlanner", "default_max_memory", "is_out_of_memory"]

MEMORY_SHARE = 0.5
"""Default budget: this share of the available RAM (CPU) or free GPU memory (CUDA)."""

MAX_BATCH = 256
"""Probing stops at this many copies per call."""

IMPROVEMENT = 0.97
"""A larger batch is kept only when its time per copy is below this share of the best."""

CALLS_PER_SIZE = 3
"""Probing calls per size; the first is a warm-up (TorchScript specialises on shapes)."""

CALL_OVERHEAD = 0.05
"""Seconds: a bound on the fixed cost of one model call (dispatch, Python, copies)."""

SAFETY = 1.25
"""Extrapolated memory per copy is inflated by this factor before it is trusted."""


_clock = time.perf_counter


def default_max_memory(device: torch.device) -> int:
    """``MEMORY_SHARE`` of the free GPU memory (CUDA, counting torch's unused cache)
    or of the available RAM (anything else, from ``psutil``)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(MEMORY_SHARE * (free + cached))
    import psutil

    return int(MEMORY_SHARE * psutil.virtual_memory().available)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that an allocation failed (CUDA or CPU)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _read_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


class _Meter:
    """Peak memory of the process (or of the CUDA device) during one call."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.proc = False
        if not self.cuda:
            try:
                self._reset_proc()
                self.proc = True
            except OSError:
                self.proc = False

    @staticmethod
    def _reset_proc() -> None:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current resident set
        _read_status("VmHWM")

    def current(self) -> int:
        if self.cuda:
            return torch.cuda.memory_allocated(self.device)
        if self.proc:
            return _read_status("VmRSS")
        import psutil

        return psutil.Process().memory_info().rss

    def measure(self, call: Callable[[], None]) -> int:
        """Run ``call``; return the peak footprint reached during it (bytes)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            call()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        if self.proc:
            self._reset_proc()
            call()
            return _read_status("VmHWM")
        return self._sampled(call)

    def _sampled(self, call: Callable[[], None]) -> int:
        import psutil

        process = psutil.Process()
        peak = [process.memory_info().rss]
        done = threading.Event()

        def sample():
            while not done.wait(0.002):
                peak[0] = max(peak[0], process.memory_info().rss)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            call()
        finally:
            done.set()
            thread.join()
        return max(peak[0], process.memory_info().rss)


@dataclasses.dataclass
class _Plan:
    """The probe's state and outcome for one kind of evaluation."""

    atoms: int
    probes: dict[int, list[float]] = dataclasses.field(default_factory=dict)
    footprints: dict[int, int] = dataclasses.field(default_factory=dict)
    best: int = 1
    done: bool = False
    cap: int = MAX_BATCH

    def next_size(self) -> int:
        """The size of the next probing call."""
        if not self.probes:
            return 1
        largest = max(self.probes)
        return largest if len(self.probes[largest]) < CALLS_PER_SIZE else 2 * largest

    def per_copy(self, size: int) -> float:
        """Seconds per copy at ``size`` (the first call of a size is a warm-up)."""
        return min(self.probes[size][1:]) / size

    def predicted(self, size: int) -> float:
        """Footprint of ``size`` copies, extrapolated from the two largest probes."""
        sizes = sorted(self.footprints)
        if size <= sizes[-1]:
            return float(self.footprints[sizes[-1]])
        top = self.footprints[sizes[-1]]
        if len(sizes) == 1:
            slope = top / sizes[-1]
        else:
            low = self.footprints[sizes[-2]]
            slope = max((top - low) / (sizes[-1] - sizes[-2]), 0.0)
            slope = max(slope, 0.1 * top / sizes[-1])
        return top + SAFETY * slope * (size - sizes[-1])

    def judge(self, size: int, budget: int) -> None:
        """After the last probing call of ``size``: keep it if it is faster per copy,
        and probe twice the size only when that can still pay."""
        if size == 1:
            # a call's fixed cost is below CALL_OVERHEAD: when (1 - IMPROVEMENT) of a
            # copy's time exceeds it, no batch can be IMPROVEMENT faster per copy
            promising = (1 - IMPROVEMENT) * self.per_copy(1) < CALL_OVERHEAD
        else:
            previous = self.per_copy(self.best)
            if self.per_copy(size) >= IMPROVEMENT * previous:
                self.done = True
                return
            # t(b) = c + s b: doubling again saves half of what this doubling saved
            gain = 1 - self.per_copy(size) / previous
            promising = gain / 2 >= 1 - IMPROVEMENT
        self.best = size
        following = 2 * size
        if not promising or following > self.cap or self.predicted(following) > budget:
            self.done = True


class BatchPlanner:
    """Copies per model call: ``batch_size`` when given, else measured (see the module
    docstring) within ``max_memory`` bytes (default: :func:`default_max_memory`)."""

    def __init__(self, *, batch_size: int | None = None, max_memory: int | None = None):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if max_memory is not None and max_memory <= 0:
            raise ValueError(f"memory budget must be positive, got {max_memory}")
        self.batch_size = batch_size
        self.max_memory = max_memory
        self.plans: dict[Hashable, _Plan] = {}
        self.calls = 0
        self.largest = 0
        self._meter: _Meter | None = None
        self._base = 0

    def budget(self, device: torch.device) -> int:
        if self.max_memory is None:
            self.max_memory = default_max_memory(device)
        return self.max_memory

    def size_for(self, key: Hashable, n_atoms: int) -> int | None:
        """The chosen copies per call for ``key`` once probing is over (else ``None``)."""
        if self.batch_size is not None:
            return self.batch_size
        plan = self.plans.get(key)
        if plan is None or not plan.done:
            return None
        return self._scaled(plan, n_atoms)

    def _scaled(self, plan: _Plan, n_atoms: int) -> int:
        """``plan.best``, reduced so that a larger structure of the bucket still fits."""
        size = min(plan.best, plan.cap)
        if n_atoms > plan.atoms and plan.footprints:
            footprint = plan.predicted(size) * n_atoms / plan.atoms
            if footprint > self.max_memory:
                size = max(1, math.floor(size * self.max_memory / footprint))
        return size

    def run(
        self,
        key: Hashable,
        n_copies: int,
        n_atoms: int,
        device: torch.device,
        evaluate: Callable[[int, int], None],
    ) -> None:
        """Call ``evaluate(start, stop)`` on consecutive chunks covering ``range(n_copies)``.
        ``evaluate`` must leave no trace when it raises (it is retried)."""
        budget = self.budget(device)
        plan = self.plans.get(key) if self.batch_size is None else None
        if self.batch_size is None and plan is None:
            plan = self.plans[key] = _Plan(atoms=n_atoms)
        if self._meter is None and plan is not None:
            self._meter = _Meter(device)
            self._base = self._meter.current()
        start = 0
        while start < n_copies:
            remaining = n_copies - start
            probing = plan is not None and not plan.done
            if self.batch_size is not None:
                size = self.batch_size
            elif probing:
                size = min(plan.next_size(), plan.cap)
                if size > remaining:  # too few copies left to probe this size
                    size, probing = min(plan.best, remaining), False
            else:
                size = self._scaled(plan, n_atoms)
            size = min(size, remaining)
            stop = start + size
            try:
                if probing:
                    self._probe(plan, size, budget, lambda a=start, b=stop: evaluate(a, b))
                else:
                    evaluate(start, stop)
            except Exception as error:
                if not is_out_of_memory(error) or size == 1:
                    raise
                self._release(device)
                if plan is None:  # a fixed batch size: halve it for good
                    self.batch_size = max(1, size // 2)
                else:
                    plan.cap = max(1, size // 2)
                    plan.best = min(plan.best, plan.cap)
                    plan.done = plan.done or probing
                continue
            self.calls += 1
            self.largest = max(self.largest, size)
            start = stop

    def _probe(self, plan: _Plan, size: int, budget: int, call: Callable[[], None]) -> None:
        begin = _clock()
        peak = self._meter.measure(call)
        elapsed = _clock() - begin
        plan.probes.setdefault(size, []).append(elapsed)
        footprint = max(peak - self._base, 0)
        plan.footprints[size] = max(plan.footprints.get(size, 0), footprint)
        if len(plan.probes[size]) == CALLS_PER_SIZE:
            plan.judge(size, budget)

    @staticmethod
    def _release(device: torch.device) -> None:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
