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

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Sequence

import torch

from .errors import Cancelled, ConfigError
from .jobs import CancelToken, Progress, check, report
from .measure import TOLERANCES, interleaved, peak_memory, threads, within_tolerance
from .specs import MUST_BE, Setting, Spec, Wording, _bounds, check_choice, check_float, check_int, setting, settings

__all__ = [
    "BACKENDS",
    "PASSES",
    "Axis",
    "TimingConfig",
    "Case",
    "make_case",
    "contestants",
    "check_case",
    "time_backends",
    "FLOOR",
    "FLOOR_TEXT",
    "SHAPE_FIELDS",
    "floor_ratios",
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


FLOOR = "torch"
"""the backend every other is measured against (:data:`FLOOR_TEXT` says why)"""

FLOOR_TEXT = ("The floor is bare torch.nn.GRU run once over the whole sequence on the same data, ignoring the "
              "resets: the least work a GRU layer does here, so 1.0 is the floor's own time, 2.0 twice it, and "
              "below 1.0 faster than it (without torch in the run, the fastest backend of each shape is the floor).")
"""the floor in one sentence, as the timing panel and figure show it"""

SHAPE_FIELDS = ("batch", "steps", "hidden", "reset_rate", "layers", "input_size", "device", "dtype")
"""the fields of a record that make its shape: records with equal ones were measured in one interleaved run"""


def floor_ratios(records: Iterable[dict]) -> list[dict[str, object]]:
    """Each record's median over its floor's: the floor of a shape and pass is :data:`FLOOR` when it
    was measured, else the fastest backend of that shape and pass.

    Returns one dict per record, in order: ``{"ratio": float, "floor": backend, "floor_s": seconds}``.
    The floor's own ratio is exactly 1.

    Examples:
        >>> recs = [{"backend": b, "pass": "forward", "steps": 8, "median_s": s}
        ...         for b, s in (("torch", 0.002), ("workbench", 0.003), ("workbench:python", 0.0015))]
        >>> [(r["floor"], r["ratio"]) for r in floor_ratios(recs)]
        [('torch', 1.0), ('torch', 1.5), ('torch', 0.75)]
        >>> [(r["floor"], r["ratio"]) for r in floor_ratios(recs[1:])]  # no torch: the fastest
        [('workbench:python', 2.0), ('workbench:python', 1.0)]
    """
    records = list(records)
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        groups.setdefault((rec["pass"], *(rec.get(f) for f in SHAPE_FIELDS)), []).append(rec)
    floors = {}
    for key, recs in groups.items():
        named = [r for r in recs if r["backend"] == FLOOR]
        floors[key] = named[0] if named else min(recs, key=lambda r: r["median_s"])
    out = []
    for rec in records:
        floor = floors[(rec["pass"], *(rec.get(f) for f in SHAPE_FIELDS))]
        out.append({"ratio": rec["median_s"] / floor["median_s"], "floor": floor["backend"],
                    "floor_s": floor["median_s"]})
    return out


# ---------------------------------------------------------------------------- settings
def _as_tuple(value) -> tuple:
    """One value or an iterable of values → a tuple (a string is one value)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Axis(Setting):
    """A grid axis: one value or several, stored as a tuple, each value checked by the shared validators.

    ``kind`` is ``"ints"``, ``"floats"`` or ``"strs"`` (with ``choices``). A value out of range raises a
    :class:`~workbench.errors.ConfigError` naming the field, the range and the value among the others.

    Examples:
        >>> Axis("ints", "T", low=1).check("Demo", "steps", [16, 64])
        (16, 64)
        >>> Axis("ints", "T", low=1).check("Demo", "steps", (16, 0))
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: Demo: 'steps' values must be ints >= 1; got 0 in (16, 0).
    """

    def check(self, owner: str, name: str, value, wording: Wording = MUST_BE) -> tuple:
        values = _as_tuple(value)
        among = repr(values).replace("{", "{{").replace("}", "}}")
        if self.choices is not None:
            if not values:
                raise ConfigError(f"{owner}: '{name}' must hold at least one of {list(self.choices)}; got {values!r}.")
            each = Wording(f"{{owner}}: '{{name}}' must be some of {list(self.choices)}; got {{value!r}} in {among}.",
                           wording.integer)
            for v in values:
                check_choice(owner, name, v, self.choices, wording=each)
            return values
        each = Wording(f"{{owner}}: '{{name}}' values must be {{expected}}; got {{value!r}} in {among}.", "ints",
                       "numbers")
        if not values:
            expected = f"{'ints' if self.kind == 'ints' else 'numbers'} {_bounds(self.low, self.high, False)}"
            raise ConfigError(f"{owner}: '{name}' must hold at least one value ({expected}); got {values!r}.")
        single = dataclasses.replace(self, kind=self.kind[:-1])  # "ints" -> "int", "floats" -> "float"
        for v in values:
            Setting.check(single, owner, name, v, each)
        return values


@dataclass(frozen=True)
class _Unchanged(Setting):
    """A setting whose ``None`` means "leave it as it is" (accepted, not offered as a value)."""

    def check(self, owner: str, name: str, value, wording: Wording = MUST_BE):
        return None if value is None else super().check(owner, name, value, wording)


def _field(info: Setting):
    return dataclasses.field(default=info.default, metadata={"setting": info})


@dataclass(frozen=True)
class TimingConfig(Spec):
    """The settings of a timing grid, checked on creation: what :func:`time_backends` and the timing panel run.

    The grid axes (``backends``, ``batch``, ``steps``, ``hidden``, ``reset_rate``,
    ``passes``) take one value or several; they are stored as tuples. Every range and
    choice is a field setting (:func:`workbench.specs.settings`; the panel's controls are
    built from them); :attr:`LIMITS` lists the ranges. A value out of range raises
    :class:`~workbench.errors.ConfigError` naming the field, the range and what came in.

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

    backends: tuple[str, ...] = _field(Axis(
        "strs", "contestants, from BACKENDS", ("torch", "torchrl", "workbench"), choices=BACKENDS,
        choice_labels={
            "torch": "torch: bare nn.GRU / cuDNN, ignores resets (floor)",
            "torchrl": "torchrl: GRUModule (pad)",
            "workbench": "workbench: auto",
            "workbench:fused": "workbench: fused reset-aware loop",
            "workbench:packed": "workbench: packed nn.GRU / cuDNN",
            "workbench:native": "workbench: nn.GRU / cuDNN between resets",
            "workbench:loop": "workbench: reference step loop",
            "workbench:python": "workbench: Python cell",
            "torchrl:python": "torchrl: Python cell",
        }))
    batch: tuple[int, ...] = _field(Axis("ints", "sequences per call (one case per value)", (32,), low=1))
    steps: tuple[int, ...] = _field(Axis("ints", "T, steps per sequence (one case per value)", (128,), low=1,
                                         label="T (steps)"))
    hidden: tuple[int, ...] = _field(Axis("ints", "hidden units (one case per value)", (128,), low=1))
    reset_rate: tuple[float, ...] = _field(Axis(
        "floats", "chance that a step starts a new episode (one case per value)", (0.0, 0.02), low=0, high=1))
    passes: tuple[str, ...] = _field(Axis("strs", "forward and/or forward+backward", PASSES, choices=PASSES))
    layers: int = setting(1, "stacked GRU layers", low=1)
    input_size: int = setting(32, "input features", low=1)
    device: str | torch.device = "cpu"
    """where the cases run"""
    dtype: torch.dtype = torch.float32
    """a floating-point dtype of the data and weights"""
    num_threads: int | None = _field(_Unchanged("int", "torch threads while timing (None: unchanged)", 1, low=1))
    rounds: int = setting(7, "timing rounds per contestant", low=1, high=1000)
    block_s: float = setting(0.02, "seconds of calls per timed block", low=1e-6, high=60)
    memory: bool = setting(True, "also measure the peak memory of each contestant")
    seed: int = setting(0, "seed of the random case", low=0)

    WORDING: ClassVar[Wording] = Wording(MUST_BE.template, MUST_BE.integer, "a number")
    LIMITS: ClassVar[dict[str, tuple]]
    """``(low, high)`` of every numeric field, both included (``None``: unbounded), read from the settings"""
    AXES: ClassVar[tuple[str, ...]] = ("batch", "steps", "hidden", "reset_rate")
    """the numeric axes of the grid, in the order of :meth:`cases`"""

    def _check(self) -> None:
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ConfigError(f"TimingConfig: 'dtype' must be a floating-point torch.dtype, e.g. torch.float32; "
                              f"got {self.dtype!r}.")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            raise ConfigError(f"TimingConfig: 'device' must name a torch device, e.g. 'cpu' or 'cuda'; "
                              f"got {self.device!r}.") from None

    def cases(self) -> list[tuple]:
        """Every ``(batch, steps, hidden, reset_rate)`` of the grid, in the order they are timed."""
        return list(itertools.product(*(getattr(self, name) for name in self.AXES)))

    def as_kwargs(self) -> dict[str, object]:
        """The fields as keyword arguments of :func:`time_backends`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


TimingConfig.LIMITS = {name: (info.low, info.high) for name, info in settings(TimingConfig).items()
                       if info.low is not None}


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
    limits, wording = TimingConfig.LIMITS, TimingConfig.WORDING
    for name, value in (("batch", batch), ("steps", steps), ("input_size", input_size), ("hidden", hidden),
                        ("layers", layers), ("seed", seed)):
        check_int("make_case", name, value, low=limits[name][0], high=limits[name][1], wording=wording)
    check_float("make_case", "reset_rate", reset_rate, low=limits["reset_rate"][0], high=limits["reset_rate"][1],
                wording=wording)
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
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
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

    ``cancel`` (a :class:`~workbench.jobs.CancelToken`) is checked between cases and between the
    timing rounds inside a case; once cancelled, :class:`~workbench.errors.Cancelled` carries the
    records of the cases finished (``partial``; ``done``/``total`` count cases). ``on_progress(done,
    total)`` is called after each case.

    Examples:
        >>> from workbench.jobs import CancelToken
        >>> token, seen = CancelToken(), []
        >>> def stop_after_one(done, total):
        ...     seen.append((done, total))
        ...     token.cancel("enough")
        >>> try:
        ...     time_backends(backends=("torch",), steps=(2, 4, 8), batch=(1,), hidden=(4,), reset_rate=(0.0,),
        ...                   passes=("forward",), rounds=1, block_s=0.0001, memory=False, cancel=token,
        ...                   on_progress=stop_after_one)
        ... except Cancelled as err:
        ...     print(err, [r["steps"] for r in err.partial], seen)
        timing: cancelled after 1 of 3 cases [2] [(1, 3)]
    """
    cfg = TimingConfig(backends=backends, batch=batch, steps=steps, hidden=hidden, reset_rate=reset_rate,
                       passes=passes, layers=layers, input_size=input_size, device=device, dtype=dtype,
                       num_threads=num_threads, rounds=rounds, block_s=block_s, memory=memory, seed=seed)
    records: list[dict[str, object]] = []
    cases = cfg.cases()
    with threads(cfg.num_threads):
        for done, (b, t, hsize, p) in enumerate(cases):
            check(cancel, "timing", done=done, total=len(cases), unit="cases", partial=records)
            case = make_case(b, t, cfg.input_size, hsize, cfg.layers, p, device=cfg.device, dtype=cfg.dtype,
                             seed=cfg.seed)
            fns = contestants(case, cfg.backends, cfg.passes)
            try:
                timed = interleaved({f"{k[0]}|{k[1]}": v[0] for k, v in fns.items()},
                                    rounds=cfg.rounds, block_s=cfg.block_s, device=cfg.device, cancel=cancel)
            except Cancelled as err:  # inside a case: the cases finished are the partial result
                raise Cancelled("timing", done=done, total=len(cases), unit="cases", partial=records) from err
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
            report(on_progress, done + 1, len(cases))
    return records
