"""The backend timing grid: which GRU backend is fastest on which shapes, as data.

- :class:`TimingConfig` is the grid (backends × batch × T × hidden × reset
  rate × {forward, forward+backward}) with its ranges, checked on creation;
- :func:`make_case` makes the data of one cell, :func:`contestants` the
  callables on it (workbench backends, torchrl 0.14's ``GRUModule`` and bare
  ``torch.nn.GRU`` on the same data), :func:`check_case` compares them;
- :func:`time_backends` measures the grid with the harness of
  :mod:`workbench.measure` and returns one record per cell, for the backend
  timing panel and the benchmark runner. A record names its pass ``"pass"``
  and its reset rate ``"reset_rate"``, like the config.

Examples:
    >>> rows = time_backends(backends=("torch", "workbench"), batch=(2,), steps=(4,), hidden=(8,),
    ...                      reset_rate=(0.2,), passes=("forward",), rounds=2, block_s=0.001, memory=False)
    >>> sorted(rows[0])[:4], len(rows)
    (['backend', 'batch', 'device', 'dtype'], 2)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Callable, ClassVar, Iterable, Sequence

import torch

from .errors import ConfigError
from .measure import TOLERANCES, interleaved, peak_memory, threads, within_tolerance

__all__ = [
    "BACKENDS",
    "PASSES",
    "TimingConfig",
    "Case",
    "make_case",
    "contestants",
    "check_case",
    "time_backends",
]

PASSES = ("forward", "forward+backward")

BACKENDS = (
    "torch",
    "torchrl",
    "workbench",
    "workbench:fused",
    "workbench:packed",
    "workbench:native",
    "workbench:loop",
    "workbench:python",
    "torchrl:python",
)
"""What :func:`contestants` can build.

``torch`` is bare ``torch.nn.GRU`` on the same data *without* resets (the
floor: it ignores ``is_init``); ``torchrl`` is torchrl's ``GRUModule``
(``recurrent_backend="pad"``); ``workbench`` is :class:`workbench.GRUModule`
with ``recurrent_backend="auto"``, and ``workbench:<backend>`` forces one;
``workbench:python`` and ``torchrl:python`` are the Python cells
(``python_based=True``).
"""


# ---------------------------------------------------------------------------- settings
def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _in_range(value, low, high) -> bool:
    """Whether ``value`` is a real number (not a bool, not NaN) in ``[low, high]`` (``None``: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _range_text(low, high, kind: str) -> str:
    if high is None:
        return f"{kind} >= {low}"
    return f"{kind} in [{low}, {high}]"


def _check_number(where: str, name: str, value, low, high=None, *, integer: bool = True) -> None:
    """Raises :class:`ConfigError` naming ``name``, its range and ``value`` when ``value`` is out of range."""
    if (integer and not _is_int(value)) or not _in_range(value, low, high):
        kind = "an int" if integer else "a number"
        raise ConfigError(f"{where}: '{name}' must be {_range_text(low, high, kind)}; got {value!r}.")


def _as_tuple(value) -> tuple:
    """One value or an iterable of values → a tuple (a string is one value)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class TimingConfig:
    """The settings of a timing grid, checked on creation: what :func:`time_backends` and the timing panel run.

    The grid axes (``backends``, ``batch``, ``steps``, ``hidden``, ``reset_rate``,
    ``passes``) take one value or several; they are stored as tuples. A value out of
    range raises :class:`~workbench.errors.ConfigError` naming the field, the range
    and what came in; :attr:`LIMITS` holds the ranges (the panel's controls read them).

    Examples:
        >>> cfg = TimingConfig(batch=8, steps=(16, 64), reset_rate=(0, 0.05))
        >>> cfg.batch, cfg.steps, len(cfg.cases())
        ((8,), (16, 64), 4)
        >>> TimingConfig(reset_rate=(0.0, 2))
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: TimingConfig: 'reset_rate' values must be numbers in [0, 1]; got 2 in (0.0, 2).
        >>> TimingConfig(rounds=0)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: TimingConfig: 'rounds' must be an int in [1, 1000]; got 0.
    """

    backends: tuple[str, ...] = ("torch", "torchrl", "workbench")
    """contestants, from :data:`BACKENDS`"""
    batch: tuple[int, ...] = (32,)
    """sequences per call (one case per value)"""
    steps: tuple[int, ...] = (128,)
    """T, steps per sequence (one case per value)"""
    hidden: tuple[int, ...] = (128,)
    """hidden units (one case per value)"""
    reset_rate: tuple[float, ...] = (0.0, 0.02)
    """chance that a step starts a new episode (one case per value)"""
    passes: tuple[str, ...] = PASSES
    """``forward`` and/or ``forward+backward``, from :data:`PASSES`"""
    layers: int = 1
    """stacked GRU layers"""
    input_size: int = 32
    """input features"""
    device: str | torch.device = "cpu"
    """where the cases run"""
    dtype: torch.dtype = torch.float32
    """a floating-point dtype of the data and weights"""
    num_threads: int | None = 1
    """torch threads while timing (``None``: unchanged)"""
    rounds: int = 7
    """timing rounds per contestant"""
    block_s: float = 0.02
    """seconds of calls per timed block"""
    memory: bool = True
    """also measure the peak memory of each contestant"""
    seed: int = 0
    """seed of the random case"""

    LIMITS: ClassVar[dict[str, tuple]] = {
        "batch": (1, None), "steps": (1, None), "hidden": (1, None), "reset_rate": (0, 1),
        "layers": (1, None), "input_size": (1, None), "num_threads": (1, None), "rounds": (1, 1000),
        "block_s": (1e-6, 60), "seed": (0, None),
    }
    """``(low, high)`` of every numeric field, both included (``None``: unbounded)"""
    AXES: ClassVar[tuple[str, ...]] = ("batch", "steps", "hidden", "reset_rate")
    """the numeric axes of the grid, in the order of :meth:`cases`"""

    def __post_init__(self) -> None:
        where = "TimingConfig"
        for name, choices in (("backends", BACKENDS), ("passes", PASSES)):
            values = _as_tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values:
                raise ConfigError(f"{where}: '{name}' must hold at least one of {list(choices)}; got {values!r}.")
            unknown = [v for v in values if v not in choices]
            if unknown:
                raise ConfigError(f"{where}: '{name}' must be some of {list(choices)}; got {unknown[0]!r} in {values!r}.")
        for name in self.AXES:
            values = _as_tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            integer = name != "reset_rate"
            kind = "ints" if integer else "numbers"
            low, high = self.LIMITS[name]
            if not values:
                raise ConfigError(f"{where}: '{name}' must hold at least one value ({_range_text(low, high, kind)}); "
                                  f"got {values!r}.")
            for v in values:
                if (integer and not _is_int(v)) or not _in_range(v, low, high):
                    raise ConfigError(f"{where}: '{name}' values must be {_range_text(low, high, kind)}; "
                                      f"got {v!r} in {values!r}.")
        for name in ("layers", "input_size", "rounds", "seed"):
            _check_number(where, name, getattr(self, name), *self.LIMITS[name])
        if self.num_threads is not None:
            _check_number(where, "num_threads", self.num_threads, *self.LIMITS["num_threads"])
        _check_number(where, "block_s", self.block_s, *self.LIMITS["block_s"], integer=False)
        if not isinstance(self.memory, bool):
            raise ConfigError(f"{where}: 'memory' must be a bool; got {self.memory!r}.")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ConfigError(f"{where}: 'dtype' must be a floating-point torch.dtype, e.g. torch.float32; "
                              f"got {self.dtype!r}.")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            raise ConfigError(f"{where}: 'device' must name a torch device, e.g. 'cpu' or 'cuda'; "
                              f"got {self.device!r}.") from None

    def cases(self) -> list[tuple]:
        """Every ``(batch, steps, hidden, reset_rate)`` of the grid, in the order they are timed."""
        import itertools

        return list(itertools.product(*(getattr(self, name) for name in self.AXES)))

    def as_kwargs(self) -> dict[str, object]:
        """The fields as keyword arguments of :func:`time_backends`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------- cases
@dataclass
class Case:
    """The data of one measurement: a batch of sequences in the TensorDict layout."""

    batch: int
    steps: int
    input_size: int
    hidden: int
    layers: int
    reset_rate: float
    x: torch.Tensor  # [B, T, F]
    h: torch.Tensor  # [B, T, L, H]
    is_init: torch.Tensor  # [B, T] (t = 0 True)
    state_dict: dict
    device: torch.device
    dtype: torch.dtype

    def tensordict(self, *, requires_grad: bool = False):
        from tensordict import TensorDict

        x, h = self.x, self.h
        if requires_grad:
            x, h = x.detach().requires_grad_(), h.detach().requires_grad_()
        return TensorDict(
            {"x": x, "h": h, "is_init": self.is_init.unsqueeze(-1)},
            [self.batch, self.steps],
            device=self.device,
        )


def make_case(
    batch: int = 32,
    steps: int = 128,
    input_size: int = 32,
    hidden: int = 128,
    layers: int = 1,
    reset_rate: float = 0.02,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Case:
    """Random inputs, stored hidden states, resets (each step restarts with ``reset_rate``) and weights.

    Sizes must be ints >= 1 and ``reset_rate`` a number in [0, 1]
    (:class:`~workbench.errors.ConfigError` otherwise).

    Examples:
        >>> case = make_case(batch=3, steps=5, input_size=2, hidden=4, reset_rate=0.5)
        >>> tuple(case.x.shape), tuple(case.h.shape), bool(case.is_init[:, 0].all())
        ((3, 5, 2), (3, 5, 1, 4), True)
        >>> make_case(batch=0)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: make_case: 'batch' must be an int >= 1; got 0.
    """
    for name, value in (("batch", batch), ("steps", steps), ("input_size", input_size), ("hidden", hidden),
                        ("layers", layers), ("seed", seed)):
        _check_number("make_case", name, value, *TimingConfig.LIMITS[name])
    _check_number("make_case", "reset_rate", reset_rate, *TimingConfig.LIMITS["reset_rate"], integer=False)
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    x = torch.randn(batch, steps, input_size, generator=gen, dtype=dtype)
    h = torch.randn(batch, steps, layers, hidden, generator=gen, dtype=dtype)
    is_init = torch.rand(batch, steps, generator=gen) < reset_rate
    is_init[:, 0] = True
    bound = 1.0 / math.sqrt(hidden)
    ref = torch.nn.GRU(input_size, hidden, num_layers=layers, batch_first=True, dtype=dtype, device="meta")
    state = {
        k: (torch.rand(v.shape, generator=gen, dtype=dtype) * 2 - 1).mul_(bound).to(device)
        for k, v in ref.state_dict().items()
    }
    return Case(batch, steps, input_size, hidden, layers, reset_rate, x.to(device), h.to(device),
                is_init.to(device), state, device, dtype)


_IN_KEYS, _OUT_KEYS = ["x", "h"], ["y", ("next", "h")]


def _module(kind: str, case: Case, backend: str | None = None):
    """A module (``torch``, ``torchrl``, ``workbench``) with the case's weights."""
    common = dict(input_size=case.input_size, hidden_size=case.hidden, num_layers=case.layers)
    if kind == "torch":
        module = torch.nn.GRU(batch_first=True, **common).to(device=case.device, dtype=case.dtype)
        module.load_state_dict(case.state_dict)
        return module
    python = backend == "python"
    if kind == "torchrl":
        from torchrl.modules import GRUModule as TorchRLGRUModule

        module = TorchRLGRUModule(in_keys=list(_IN_KEYS), out_keys=list(_OUT_KEYS), python_based=python,
                                  recurrent_backend="pad", **common)
    else:
        from workbench import GRUModule

        module = GRUModule(in_keys=list(_IN_KEYS), out_keys=list(_OUT_KEYS), python_based=python,
                           recurrent_backend="auto" if backend in (None, "python") else backend, **common)
    module = module.to(device=case.device, dtype=case.dtype)
    module.gru.load_state_dict(case.state_dict)
    return module


def contestants(
    case: Case, backends: Sequence[str], passes: Sequence[str] = PASSES
) -> dict[tuple[str, str], tuple[Callable[[], object], object]]:
    """``{(backend, pass): (fn, module)}`` for one case, all on the same data and weights.

    ``forward`` runs under ``torch.no_grad``; ``forward+backward`` backpropagates
    the sum of the outputs (``"y"`` and ``("next", h)`` for the modules, the
    output and ``h_n`` for bare torch) to the parameters and the inputs. Bare
    ``torch`` runs one ``nn.GRU`` call from the stored state at ``t = 0`` and
    ignores resets.
    """
    from workbench import set_recurrent_mode

    out = {}
    for backend in backends:
        if backend not in BACKENDS:
            raise ValueError(f"workbench.timing: unknown backend {backend!r}; choose from {list(BACKENDS)}.")
        kind, _, variant = backend.partition(":")
        module = _module(kind, case, variant or None)
        for which in passes:
            grad = which == "forward+backward"
            if kind == "torch":
                x = case.x.detach().requires_grad_(grad)
                h0 = case.h[:, 0].transpose(0, 1).contiguous().requires_grad_(grad)

                def fn(module=module, x=x, h0=h0, grad=grad):
                    if not grad:
                        with torch.no_grad():
                            return module(x, h0)
                    y, h_n = module(x, h0)
                    (y.sum() + h_n.sum()).backward()

            else:
                td = case.tensordict(requires_grad=grad)
                mode = set_recurrent_mode  # workbench's switch is torchrl's as well

                def fn(module=module, td=td, grad=grad, mode=mode):
                    with mode(True):
                        if not grad:
                            with torch.no_grad():
                                return module(td.copy())
                        res = module(td.copy())
                        (res["y"].sum() + res["next", "h"].sum()).backward()

            out[(backend, which)] = (fn, module)
    return out


def check_case(case: Case, backends: Sequence[str], *, reference: str = "torchrl") -> dict[str, dict]:
    """Compares every module backend with ``reference`` on the case.

    Compares the outputs, ``("next", h)``, and the gradients of a random
    projection of both with respect to the parameters, the inputs and the
    stored hidden states. Returns ``{backend: {"max_abs_diff", "ok"}}`` where
    ``ok`` means every tensor agrees within :data:`~workbench.measure.TOLERANCES`
    (``|a - b| <= atol + rtol max|b|``). Bare ``torch`` is skipped (it ignores resets).
    """
    from workbench import set_recurrent_mode

    def run(backend):
        kind, _, variant = backend.partition(":")
        module = _module(kind, case, variant or None)
        td = case.tensordict(requires_grad=True)
        x, h = td["x"], td["h"]
        with set_recurrent_mode(True):
            res = module(td.copy())
        gen = torch.Generator().manual_seed(1)
        py = torch.randn(res["y"].shape, generator=gen, dtype=case.dtype).to(case.device)
        ph = torch.randn(res["next", "h"].shape, generator=gen, dtype=case.dtype).to(case.device)
        loss = (res["y"] * py).sum() + (res["next", "h"] * ph).sum()
        params = [p for _, p in sorted(module.gru.named_parameters())]
        grads = torch.autograd.grad(loss, [x, h, *params])
        return [res["y"].detach(), res["next", "h"].detach(), *grads]

    atol, rtol = TOLERANCES.get(case.dtype, (1e-4, 1e-4))
    ref = run(reference)
    results = {}
    for backend in backends:
        if backend == "torch" or backend == reference:
            continue
        got = run(backend)
        diff = max(float((a - b).abs().max()) if a.numel() else 0.0 for a, b in zip(got, ref))
        ok = all(within_tolerance(a, b, atol, rtol) for a, b in zip(got, ref))
        results[backend] = {"max_abs_diff": diff, "ok": ok}
    return results


def time_backends(
    *,
    backends: Sequence[str] = ("torch", "torchrl", "workbench"),
    batch: Iterable[int] = (32,),
    steps: Iterable[int] = (128,),
    hidden: Iterable[int] = (128,),
    reset_rate: Iterable[float] = (0.0, 0.02),
    passes: Sequence[str] = PASSES,
    layers: int = 1,
    input_size: int = 32,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    num_threads: int | None = 1,
    rounds: int = 7,
    block_s: float = 0.02,
    memory: bool = True,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Measures every backend on a grid; one record per (case, backend, pass).

    Each record has the case (``batch``, ``steps``, ``hidden``, ``layers``,
    ``input_size``, ``reset_rate``, ``device``, ``dtype``), the ``backend`` and
    ``pass``, the ``median_s``/``q1_s``/``q3_s`` per call, ``per_step_s``
    (median over ``batch * steps``), ``peak_bytes`` (``None`` unless
    ``memory``), ``ratio_to_floor`` (against bare ``torch`` in the same
    interleaved run, when it was measured) and ``last_backend`` (what a
    workbench module picked). All backends of a case are timed in one
    interleaved run. The arguments are checked first, as a :class:`TimingConfig`
    (:class:`~workbench.errors.ConfigError` names the first one out of range).
    """
    cfg = TimingConfig(backends=backends, batch=batch, steps=steps, hidden=hidden, reset_rate=reset_rate,
                       passes=passes, layers=layers, input_size=input_size, device=device, dtype=dtype,
                       num_threads=num_threads, rounds=rounds, block_s=block_s, memory=memory, seed=seed)
    records = []
    with threads(cfg.num_threads):
        for b, t, hsize, p in cfg.cases():
            case = make_case(b, t, cfg.input_size, hsize, cfg.layers, p, device=cfg.device, dtype=cfg.dtype,
                             seed=cfg.seed)
            fns = contestants(case, cfg.backends, cfg.passes)
            timed = interleaved({f"{k[0]}|{k[1]}": v[0] for k, v in fns.items()},
                                rounds=cfg.rounds, block_s=cfg.block_s, device=cfg.device)
            for (backend, which), (fn, module) in fns.items():
                m = timed[f"{backend}|{which}"]
                floor = timed.get(f"torch|{which}")
                records.append({
                    "backend": backend,
                    "pass": which,
                    "batch": b,
                    "steps": t,
                    "hidden": hsize,
                    "layers": cfg.layers,
                    "input_size": cfg.input_size,
                    "reset_rate": p,
                    "device": str(torch.device(cfg.device)),
                    "dtype": str(cfg.dtype).replace("torch.", ""),
                    "median_s": m.median,
                    "q1_s": m.q1,
                    "q3_s": m.q3,
                    "per_step_s": m.median / max(1, b * t),
                    "ratio_to_floor": None if floor is None else m.median / floor.median,
                    "peak_bytes": peak_memory(fn, cfg.device) if cfg.memory else None,
                    "last_backend": getattr(module, "last_backend", None),
                })
    return records
