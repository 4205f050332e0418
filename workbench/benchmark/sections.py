"""The benchmark's sections: each checks its contestants against torchrl, times them and adds rows and targets.

A section is ``section_<name>(report, cfg, out)``: ``report`` is the
:class:`~workbench.benchmark.report.Report` it appends to, ``cfg`` the run's
settings (:func:`workbench.benchmark.runner.configure`), ``out`` where lines go.
"""

from __future__ import annotations

import math
import time

import torch

from .. import measure, timing
from .report import Check, Report, Row, Target, print_rows

__all__ = ["MAIN", "SCALING_STEPS", "STEP_CASES", "section_step", "section_recurrent", "section_scaling",
           "section_python", "section_rollout"]

MAIN = dict(batch=32, steps=128, input_size=32, hidden=128, reset_rate=0.02)
SCALING_STEPS = (16, 64, 256, 1024)
STEP_CASES = (((), 64), ((), 256), ((16,), 64), ((16,), 256))


# ---------------------------------------------------------------------------- helpers
def _check_max(a_list, b_list) -> float:
    return max((float((a - b).abs().max()) if a.numel() else 0.0) for a, b in zip(a_list, b_list))


def _section(report: Report, title: str, out) -> None:
    out("")
    out(f"== {title} ==")


# ---------------------------------------------------------------------------- single step
def _step_modules(batch, hidden, input_size, device, dtype, seed=0):
    from tensordict import TensorDict
    from torchrl.modules import GRUModule as TorchRLGRUModule

    from workbench import GRUModule

    gen = torch.Generator().manual_seed(seed)
    cell = torch.nn.GRUCell(input_size, hidden).to(device=device, dtype=dtype)
    ours = GRUModule(input_size, hidden, in_keys=["x", "h"], out_keys=["y", ("next", "h")]).to(device=device, dtype=dtype)
    theirs = TorchRLGRUModule(input_size, hidden, in_keys=["x", "h"], out_keys=["y", ("next", "h")]).to(
        device=device, dtype=dtype
    )
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            w = getattr(cell, name)
            w.copy_(torch.rand(w.shape, generator=gen, dtype=dtype).sub_(0.5).mul_(2 / math.sqrt(hidden)))
            getattr(ours.gru, f"{name}_l0").copy_(w)
            getattr(theirs.gru, f"{name}_l0").copy_(w)
    x = torch.randn(*batch, input_size, generator=gen, dtype=dtype).to(device)
    h = torch.randn(*batch, 1, hidden, generator=gen, dtype=dtype).to(device)

    def td(is_init=False):
        if isinstance(is_init, bool):
            init = torch.full((*batch, 1), is_init, dtype=torch.bool, device=device)
        else:
            init = is_init.reshape(*batch, 1).to(device)
        return TensorDict({"x": x, "h": h, "is_init": init}, list(batch), device=device)

    return cell, ours, theirs, x, h, td


def _check_step(report, out, device):
    """Single step: outputs, next hidden and gradients against torchrl, mixed is_init, float32/64."""
    for dtype in (torch.float32, torch.float64):
        atol, rtol = measure.TOLERANCES[dtype]
        worst, ok = 0.0, True
        for batch, hidden in STEP_CASES:
            _, ours, theirs, x, h, make_td = _step_modules(batch, hidden, MAIN["input_size"], device, dtype)
            init = (torch.arange(int(torch.Size(batch).numel())).reshape(batch) % 3 == 0) if batch else True
            results = []
            for module in (ours, theirs):
                xx, hh = x.detach().requires_grad_(), h.detach().requires_grad_()
                td = make_td(init)
                td.set("x", xx)
                td.set("h", hh)
                res = module(td)
                loss = (res["y"] * 1.5).sum() + (res["next", "h"] * 0.5).sum()
                params = [p for _, p in sorted(module.gru.named_parameters())]
                grads = torch.autograd.grad(loss, [xx, hh, *params])
                results.append([res["y"].detach(), res["next", "h"].detach(), *grads])
            worst = max(worst, _check_max(*results))
            ok = ok and all(measure.within_tolerance(a, b, atol, rtol) for a, b in zip(*results))
        c = Check(f"single step ({str(dtype).replace('torch.', '')}): workbench vs torchrl", worst, atol, rtol, ok)
        report.checks.append(c)
        out(f"  check {c.what}: max |diff| {worst:.2e} ({c.tolerance}) {'ok' if c.ok else 'FAILED'}")


def section_step(report: Report, cfg: dict, out) -> None:
    device = cfg["device"]
    _section(report, "Single-step call (policy inference), torch.no_grad, is_init False", out)
    _check_step(report, out, device)
    for batch, hidden in STEP_CASES:
        cell, ours, theirs, x, h, make_td = _step_modules(batch, hidden, MAIN["input_size"], device, torch.float32)
        h_cell = h.squeeze(-2)
        td_ours, td_theirs = make_td(), make_td()
        with torch.no_grad():
            m = measure.interleaved(
                {
                    "nn.GRUCell (floor)": lambda: cell(x, h_cell),
                    "torchrl": lambda: theirs(td_theirs),
                    "workbench": lambda: ours(td_ours),
                },
                rounds=cfg["rounds_step"], block_s=cfg["block_step"], device=device,
            )
        floor, trl = m["nn.GRUCell (floor)"].median, m["torchrl"].median
        label = f"batch {list(batch)}, H={hidden}"
        out(f"- {label}")
        rows = [
            Row("single step", label, name, "forward", v.median, v.q1, v.q3, v.median / floor, trl / v.median)
            for name, v in m.items()
        ]
        print_rows(rows, out)
        report.rows += rows
        ours_ratio = m["workbench"].median / floor
        report.targets.append(Target(f"single step {label}: workbench / nn.GRUCell", ours_ratio, "<=", 2.0))
        if not batch:
            report.targets.append(Target(f"single step {label}: torchrl / workbench (speed-up)", trl / m["workbench"].median, ">=", 3.0))


# ---------------------------------------------------------------------------- recurrent
def _check_recurrent(report, out, label, case_kwargs, backends, device, reference="torchrl"):
    for dtype in (torch.float32, torch.float64):
        atol, rtol = measure.TOLERANCES[dtype]
        case = timing.make_case(**case_kwargs, device=device, dtype=dtype)
        for backend, res in timing.check_case(case, backends, reference=reference).items():
            c = Check(f"{label} ({str(dtype).replace('torch.', '')}): {backend} vs {reference}", res["max_abs_diff"],
                      atol, rtol, res["ok"])
            report.checks.append(c)
            out(f"  check {c.what}: max |diff| {c.max_abs_diff:.2e} ({c.tolerance}) {'ok' if c.ok else 'FAILED'}")


def _time_case(report, out, section, label, case, backends, cfg, passes=timing.PASSES, memory=True,
               single_shot: tuple[str, str] | None = None):
    """Times ``backends`` on ``case`` (interleaved) and appends the rows; returns {(backend, pass): Row}."""
    device = cfg["device"]
    fns = timing.contestants(case, backends, passes)
    timed_fns = {k: v for k, v in fns.items() if k != single_shot}
    m = measure.interleaved({f"{b}|{p}": f for (b, p), (f, _) in timed_fns.items()},
                           rounds=cfg["rounds"], block_s=cfg["block"], device=device)
    if single_shot is not None and single_shot in fns:
        fn = fns[single_shot][0]
        measure.sync(device)
        start = time.perf_counter()
        fn()
        measure.sync(device)
        once = time.perf_counter() - start
        m[f"{single_shot[0]}|{single_shot[1]}"] = measure.Measurement("single", once, once, once, 1, [once])
    rows = {}
    for (backend, which), (fn, module) in fns.items():
        meas = m[f"{backend}|{which}"]
        floor = m.get(f"torch|{which}")
        trl = m.get(f"torchrl|{which}")
        peak = None
        if memory and which == "forward+backward" and (backend, which) != single_shot:
            peak = measure.peak_memory(fn, device)
        name = "torch (floor)" if backend == "torch" else backend
        rows[(backend, which)] = Row(
            section, label, name, which, meas.median, meas.q1, meas.q3,
            None if floor is None else meas.median / floor.median,
            None if trl is None else trl.median / meas.median,
            peak, None, getattr(module, "last_backend", None),
            "1 run (too slow to repeat)" if (backend, which) == single_shot else "",
        )
    for (backend, which), row in rows.items():
        floor_row = rows.get(("torch", which))
        if row.peak_bytes is not None and floor_row is not None and floor_row.peak_bytes:
            row.peak_ratio = row.peak_bytes / floor_row.peak_bytes
    ordered = sorted(rows.values(), key=lambda r: (timing.PASSES.index(r.passes), backends.index(
        "torch" if r.contestant == "torch (floor)" else r.contestant)))
    print_rows(ordered, out)
    report.rows += ordered
    return rows


def section_recurrent(report: Report, cfg: dict, out) -> None:
    device = cfg["device"]
    extra = cfg["extra_backends"]
    for layers in (1, 2):
        kw = dict(MAIN, layers=layers)
        title = (f"Recurrent mode with resets (p={MAIN['reset_rate']}), B={MAIN['batch']} T={MAIN['steps']} "
                 f"F={MAIN['input_size']} H={MAIN['hidden']}, {layers} layer{'s' if layers > 1 else ''}")
        _section(report, title, out)
        backends = ["torch", "torchrl", "workbench", *extra]
        _check_recurrent(report, out, f"recurrent L={layers}", kw, ["workbench", *extra], device)
        case = timing.make_case(**kw, device=device)
        label = f"L={layers}"
        rows = _time_case(report, out, "recurrent", label, case, backends, cfg)
        fwd, bwd = rows[("workbench", "forward")], rows[("workbench", "forward+backward")]
        report.targets += [
            Target(f"recurrent fwd, resets, {label}: workbench / bare nn.GRU (no resets)", fwd.ratio_floor, "<=", 1.25),
            Target(f"recurrent fwd, resets, {label}: torchrl / workbench (speed-up)", fwd.torchrl_over, ">=", 1.8),
            Target(f"recurrent fwd+bwd, resets, {label}: workbench / bare floor", bwd.ratio_floor, "<=", 1.3),
            Target(f"recurrent fwd+bwd, resets, {label}: torchrl / workbench (speed-up)", bwd.torchrl_over, ">=", 3.0),
            Target(f"peak memory fwd+bwd, resets, {label}: workbench / bare floor", bwd.peak_ratio, "<=", 1.3),
        ]


def section_scaling(report: Report, cfg: dict, out) -> None:
    device = cfg["device"]
    _section(report, f"Scaling with T, with resets (p={MAIN['reset_rate']}), B={MAIN['batch']} H={MAIN['hidden']}, 1 layer", out)
    per_step = {}
    for steps in cfg["scaling_steps"]:
        kw = dict(MAIN, steps=steps, layers=1)
        slow_torchrl = steps > cfg["torchrl_bwd_max_steps"]
        backends = ["torch", "torchrl", "workbench"]
        if slow_torchrl:
            _check_recurrent(report, out, f"scaling T={steps}", kw, ["workbench"], device, reference="workbench:loop")
        else:
            _check_recurrent(report, out, f"scaling T={steps}", kw, ["workbench"], device)
        case = timing.make_case(**kw, device=device)
        out(f"- T={steps}")
        single = ("torchrl", "forward+backward") if slow_torchrl else None
        if slow_torchrl and not cfg["torchrl_single_shot"]:
            rows = _time_case(report, out, "scaling", f"T={steps}", case, backends, cfg, passes=("forward",), memory=False)
            rows.update(_time_case(report, out, "scaling", f"T={steps}", case, ["torch", "workbench"], cfg,
                                   passes=("forward+backward",), memory=False))
        else:
            rows = _time_case(report, out, "scaling", f"T={steps}", case, backends, cfg, memory=False, single_shot=single)
        for which in timing.PASSES:
            per_step[(steps, which)] = {
                name: rows[(name, which)].median_s / (MAIN["batch"] * steps) for name in ("torch", "workbench", "torchrl")
                if (name, which) in rows
            }
    out("- cost per step and row (median / (B·T)), and workbench / floor:")
    for which in timing.PASSES:
        cells = []
        for steps in cfg["scaling_steps"]:
            d = per_step[(steps, which)]
            cells.append(f"T={steps}: {d['workbench'] * 1e9:.0f} ns ({d['workbench'] / d['torch']:.2f}×)")
        out(f"  {which:<17} " + ", ".join(cells))
    last = max(cfg["scaling_steps"])
    for which in timing.PASSES:
        d = per_step[(last, which)]
        report.targets.append(Target(f"scaling {which}, resets, T={last}: workbench / floor", d["workbench"] / d["torch"], "<=", 1.5))


def section_python(report: Report, cfg: dict, out) -> None:
    device = cfg["device"]
    kw = dict(MAIN, reset_rate=0.0, layers=1)
    _section(report, f"Python cell (python_based=True), no resets, B={MAIN['batch']} T={MAIN['steps']} H={MAIN['hidden']}", out)
    _check_recurrent(report, out, "python cell", kw, ["workbench:python"], device, reference="torchrl:python")
    case = timing.make_case(**kw, device=device)
    rows = _time_case(report, out, "python", "no resets", case, ["torch", "torchrl:python", "workbench:python"], cfg)
    for which in timing.PASSES:
        r = rows[("workbench:python", which)]
        report.targets.append(Target(f"python cell, no resets, {which}: workbench:python / bare nn.GRU", r.ratio_floor, "<=", 1.15))


# ---------------------------------------------------------------------------- rollout
def _rollout_policies(seed: int = 0):
    from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
    from torchrl.envs import Compose, GymEnv, InitTracker, TransformedEnv
    from torchrl.modules import MLP
    from torchrl.modules import GRUModule as TorchRLGRUModule

    from workbench import GRUModule
    from workbench.policy import MLPHead

    class NoOpRecurrent(TensorDictModuleBase):
        """Reads and writes the keys a GRU module does and computes nothing: the cost of the structure."""

        in_keys = ["observation", "recurrent_state", "is_init"]
        out_keys = ["features", ("next", "recurrent_state")]

        def forward(self, td):
            h = td.get("recurrent_state")
            td.set("features", h[..., 0, :])
            td.set(("next", "recurrent_state"), h)
            return td

    class MinimalGRU(TensorDictModuleBase):
        """``nn.GRUCell`` with the least glue (one layer, no checks): the best a GRU module could do."""

        in_keys = ["observation", "recurrent_state", "is_init"]
        out_keys = ["features", ("next", "recurrent_state")]

        def __init__(self, cell):
            super().__init__()
            self.cell = cell

        def forward(self, td):
            h = td.get("recurrent_state")[..., 0, :].masked_fill(td.get("is_init"), 0)
            h = self.cell(td.get("observation"), h)
            td.set("features", h)
            td.set(("next", "recurrent_state"), h.unsqueeze(-2))
            return td

    torch.manual_seed(seed)
    head = MLP(in_features=64, out_features=1, num_cells=[64])
    grus = {
        "workbench": GRUModule(input_size=3, hidden_size=64, in_key="observation", out_key="features"),
        "torchrl": TorchRLGRUModule(input_size=3, hidden_size=64, in_key="observation", out_key="features"),
    }
    grus["torchrl"].gru.load_state_dict(grus["workbench"].gru.state_dict())
    cell = torch.nn.GRUCell(3, 64)
    cell.load_state_dict({k[:-3]: v for k, v in grus["workbench"].gru.state_dict().items()})
    grus["minimal nn.GRUCell module"] = MinimalGRU(cell)
    grus["no-op stand-in"] = NoOpRecurrent()
    primer = grus["workbench"].make_tensordict_primer

    def env():
        return TransformedEnv(GymEnv("Pendulum-v1"), Compose(InitTracker(), primer()))

    setups = {}
    for name, gru in grus.items():
        if name == "workbench":
            # the workbench's modules as build_policy composes them: GRUModule → MLPHead
            head_module = MLPHead(head, "features", ["action"])
        else:
            head_module = TensorDictModule(head, in_keys=["features"], out_keys=["action"])
        setups[name] = (env(), TensorDictSequential(gru, head_module))
    setups["workbench + TDModule head"] = (
        env(), TensorDictSequential(grus["workbench"], TensorDictModule(head, in_keys=["features"], out_keys=["action"]))
    )
    mlp_only = TensorDictModule(MLP(in_features=3, out_features=1, num_cells=[64]), in_keys=["observation"], out_keys=["action"])
    setups["random"] = (env(), None)
    setups["MLP only (no GRU)"] = (env(), mlp_only)
    return setups


def section_rollout(report: Report, cfg: dict, out) -> None:
    steps = cfg["rollout_steps"]
    _section(report, f"Pendulum-v1 env.rollout({steps}), GRU(64)→MLP policy with primer, torch.no_grad", out)
    try:
        setups = _rollout_policies()
    except Exception as exc:  # gymnasium missing, ...
        out(f"  skipped: {type(exc).__name__}: {exc}")
        return
    # correctness: the same weights give the same actions from the same seed
    with torch.no_grad():
        actions = {}
        for name in ("workbench", "torchrl", "minimal nn.GRUCell module", "workbench + TDModule head"):
            env, policy = setups[name]
            env.set_seed(0)
            actions[name] = env.rollout(min(steps, 300), policy, break_when_any_done=False)["action"]
    atol, _ = measure.TOLERANCES[torch.float32]
    for other in ("torchrl", "minimal nn.GRUCell module", "workbench + TDModule head"):
        c = Check(f"rollout actions: workbench vs {other} policy (same weights, same seed)",
                  float((actions["workbench"] - actions[other]).abs().max()), atol)
        report.checks.append(c)
        out(f"  check {c.what}: max |diff| {c.max_abs_diff:.2e} ({c.tolerance}) {'ok' if c.ok else 'FAILED'}")

    def runner(env, policy):
        if policy is None:
            return lambda: env.rollout(steps, break_when_any_done=False)
        return lambda: env.rollout(steps, policy, break_when_any_done=False)

    with torch.no_grad():
        m = measure.interleaved({name: runner(*setup) for name, setup in setups.items()},
                               rounds=cfg["rounds_rollout"], block_s=0.0, warmup=1)
    base = m["random"].median
    rows = [Row("rollout", f"{steps} steps", name, "rollout", v.median, v.q1, v.q3, v.median / base,
                m["torchrl"].median / v.median) for name, v in m.items()]
    out("  (×floor here is × the random policy's rollout)")
    print_rows(rows, out)
    report.rows += rows
    per_step = {k: v.median / steps for k, v in m.items()}
    out(f"  per step: random {per_step['random'] * 1e6:.0f} µs; policy overhead over random: "
        + ", ".join(f"{k} {(per_step[k] - per_step['random']) * 1e6:+.0f} µs" for k in per_step if k != "random"))
    out("  (workbench = workbench.GRUModule → workbench.policy.MLPHead, the head build_policy uses; every other "
        "policy, and 'workbench + TDModule head' for reference, has tensordict's TensorDictModule head. "
        "The no-op stand-in reads and writes the GRU's keys and computes nothing; the minimal module is "
        "nn.GRUCell with no checks)")
    report.targets.append(Target(f"rollout {steps} steps: workbench policy (GRU → MLPHead) / random policy",
                                 m["workbench"].median / base, "<=", 1.3))

