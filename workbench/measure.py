"""The measurement harness: interleaved timing, peak memory, threads, sync, machine facts, tolerances.

The tools every timing in the workbench uses (the backend timing grid of
:mod:`workbench.timing`, the benchmark suite of :mod:`workbench.benchmark`):

- :func:`interleaved` times several callables round-robin (every round runs
  each contestant once, in a rotating order), so machine noise hits all of
  them alike, and reports medians over the rounds;
- :func:`peak_memory` is the peak of bytes allocated while a callable runs,
  from the allocator events of the torch profiler on CPU (the running sum of
  every allocation and free, ``profile_memory=True``) and from
  ``torch.cuda.max_memory_allocated`` on CUDA, the same method for every
  contestant;
- :func:`threads` and :func:`sync` fix the thread count and wait for the device;
  :func:`machine` says what a measurement ran on;
- :data:`TOLERANCES` and :func:`within_tolerance`: when two backends agree.

Examples:
    >>> with threads(1):
    ...     m = interleaved({"short": lambda: sum(range(10)), "long": lambda: sum(range(10_000))},
    ...                     rounds=3, block_s=0.001)
    >>> sorted(m), m["short"].median < m["long"].median
    (['long', 'short'], True)
"""

from __future__ import annotations

import contextlib
import math
import platform
import statistics
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import torch

from .jobs import CancelToken, Progress, check, report
from .provenance import versions

__all__ = [
    "Measurement",
    "interleaved",
    "peak_memory",
    "threads",
    "sync",
    "machine",
    "TOLERANCES",
    "within_tolerance",
]


@dataclass
class Measurement:
    """Per-call times of one contestant: the median and quartiles over rounds, in seconds."""

    name: str
    median: float
    q1: float
    q3: float
    number: int
    """calls per round"""
    times: list[float] = field(repr=False, default_factory=list)
    """per-call time of every round"""


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Sets ``torch.set_num_threads(n)`` inside the block (``None``: unchanged)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sync(device: torch.device | str | None) -> None:
    """Waits for the device's queued work (CUDA); nothing on CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 11,
    block_s: float = 0.02,
    warmup: int = 2,
    device: torch.device | str | None = None,
    max_number: int = 10_000,
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Measurement]:
    """Times every callable round-robin with ``torch.utils.benchmark.Timer`` and returns medians per call.

    Each contestant is warmed up first (``warmup`` calls, at least one; the
    last one calibrates ``number``, the calls per block, to about ``block_s``); then every round runs each contestant's block once
    (``Timer.timeit(number)``), the starting contestant rotating from round to
    round, so slow drifts and bursts of machine noise hit every contestant.
    The result maps each name to a :class:`Measurement`: the median and
    quartiles of the per-call time over the rounds. The thread count is left as
    the caller set it (see :func:`threads`); on CUDA every block is
    synchronized.

    ``cancel`` is checked before each warm-up and each round (a block lasts about ``block_s``):
    :class:`~workbench.errors.Cancelled` counts the finished rounds, with no partial result (a
    median needs every round). ``on_progress(done, total)`` follows the rounds.

    Examples:
        >>> m = interleaved({"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}, rounds=3, block_s=0.001)
        >>> m["a"].median < m["b"].median
        True
    """
    from torch.utils.benchmark import Timer

    names = list(fns)
    cuda = device is not None and torch.device(device).type == "cuda"
    timers, numbers = {}, {}
    for name in names:
        fn = fns[name]
        if cuda:
            def call(fn=fn):
                fn()
                torch.cuda.synchronize(device)
        else:
            call = fn
        timers[name] = Timer("call()", globals={"call": call}, num_threads=torch.get_num_threads())
        check(cancel, "timing", done=0, total=rounds, unit="rounds")
        for _ in range(warmup - 1):
            call()
        once = max(timers[name].timeit(1).mean, 1e-7)  # the last warm-up call calibrates
        numbers[name] = int(min(max_number, max(1, math.ceil(block_s / once))))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        check(cancel, "timing", done=r, total=rounds, unit="rounds")
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(timers[name].timeit(numbers[name]).mean)
        report(on_progress, r + 1, rounds)
    out = {}
    for name in names:
        ts = sorted(times[name])
        q = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) > 1 else [ts[0]] * 3
        out[name] = Measurement(name, statistics.median(ts), q[0], q[2], numbers[name], times[name])
    return out


def peak_memory(fn: Callable[[], object], device: torch.device | str | None = None) -> int:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated before.

    On CPU: the torch profiler with ``profile_memory=True`` reports every
    allocation and free of the CPU allocator; the peak of their running sum is
    returned. On CUDA: ``torch.cuda.max_memory_allocated`` after a reset. What
    ``fn`` returns is dropped before the measurement ends (it counts while it
    is alive).

    Examples:
        >>> peak_memory(lambda: torch.ones(1000, 1000).sum()) >= 4_000_000
        True
    """
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        del out
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    events = [
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    ]
    events.sort()
    peak = level = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return int(peak)


def machine() -> dict[str, object]:
    """The machine, versions (:func:`workbench.provenance.versions`) and thread count a measurement ran with."""
    info: dict[str, object] = {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": _cpu_capability(),
    }
    info.update(versions(("python", "torch", "torchrl", "tensordict", "gymnasium")))
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count()


def _cpu_capability() -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover
        return None


TOLERANCES = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-10, 0.0)}
"""``(atol, rtol)`` of :func:`check_case` per dtype, applied as
``|a - b| <= atol + rtol * max|b|`` for each compared tensor (:func:`within_tolerance`).
float32 weight gradients are sums over ``B * T`` terms: rounding alone separates two
correct implementations by about 1e-6 of the gradient's scale, and an element that
cancels to near zero keeps that absolute error, so the relative part is taken against
the tensor's largest magnitude, not the element's. float64 must agree to 1e-10 absolute."""


def within_tolerance(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    """Whether every element of ``a`` is within ``atol + rtol * max|b|`` of ``b`` (the reference).

    Examples:
        >>> ref = torch.tensor([300.0, 0.5])
        >>> within_tolerance(ref + torch.tensor([0.0, 2e-4]), ref, 1e-4, 1e-4)  # 2e-4 <= 1e-4 + 0.03
        True
        >>> within_tolerance(ref + torch.tensor([0.0, 2e-4]), ref, 1e-4, 0.0)
        False
    """
    if a.shape != b.shape:
        return False
    if not a.numel():
        return True
    return bool(((a - b).abs() <= atol + rtol * float(b.abs().max())).all())
