"""The GPU check: ``python -m workbench check-gpu``, one command and one summary line.

With CUDA it runs, within a time budget (5 minutes by default):

1. the ``gpu``-marked tests (``pytest -m gpu tests/``);
2. a rollout of a recurrent policy on the GPU (environments on CPU), with the
   diagnostics' replay check (the trajectory replayed in recurrent mode, cuDNN
   against the single steps);
3. ``python -m workbench bench --device cuda --quick``.

Without CUDA it says so in one line and runs nothing. ``--device cpu`` is a
dry run of the same three steps on a tiny budget (the tests only collected, a
short rollout, one bench section), to check the check itself on any machine.

Examples:
    >>> [step.name for step in plan("cpu")]
    ['gpu tests', 'rollout', 'bench']
    >>> plan("cpu")[0].command[-3:]
    ['gpu', '--collect-only', 'tests']
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["Step", "StepResult", "plan", "run_checks", "cuda_unavailable_reason"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 300.0
"""the whole check's time limit, seconds"""


@dataclass
class StepResult:
    """How one step went."""

    name: str
    ok: bool
    detail: str
    """a few words: counts, or why it failed"""
    seconds: float = 0.0
    output: str = field(default="", repr=False)
    """the tail of a subprocess's output, shown when the step failed"""


@dataclass
class Step:
    """One step of the check: a subprocess (``command``) or an in-process function (``run``)."""

    name: str
    command: list[str] | None = None
    summarize: Callable[[int, str], tuple[bool, str]] | None = None
    """``(returncode, output) -> (ok, detail)`` for a subprocess step"""
    run: Callable[[], tuple[bool, str]] | None = None


def cuda_unavailable_reason() -> str | None:
    """None when CUDA can run here, else why not, in words."""
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU"


def _pytest_summary(rc: int, output: str) -> tuple[bool, str]:
    collected = re.search(r"(?:(\d+)/)?(\d+) tests? collected", output)
    if collected is not None:  # a dry run: --collect-only ("3/855 tests collected (852 deselected)")
        n = int(collected.group(1) or collected.group(2))
        return rc == 0 and n > 0, f"{n} collected"
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", output))
    passed, skipped = counts.get("passed", 0), counts.get("skipped", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    detail = f"{passed} passed" + (f", {failed} failed" if failed else "") + (f", {skipped} skipped" if skipped else "")
    # on a GPU a skipped gpu test is a failure of the check: it did not test what it is for
    return rc == 0 and passed > 0 and not skipped, detail


def _bench_summary(rc: int, output: str) -> tuple[bool, str]:
    match = re.search(r"(\d+)/(\d+) targets met; (\d+)/(\d+) correctness checks passed", output)
    if match is None:
        return False, f"no summary (exit {rc})"
    met, targets, passed, checks = map(int, match.groups())
    return rc == 0 and passed == checks, f"{passed}/{checks} checks, {met}/{targets} targets met"


def _rollout_step(device: str, envs: int, steps: int) -> Callable[[], tuple[bool, str]]:
    def run() -> tuple[bool, str]:
        from .envs import EnvSpec
        from .policy import PolicySpec
        from .session import Session

        with Session(EnvSpec("CartPole-v1", num_envs=envs, seed=0), PolicySpec(hidden_size=32),
                     device=device) as session:
            session.rollout(steps, seed=0, progress=False)
        report = session.diagnose()
        where = next(session.policy.parameters()).device.type
        replay = report.replay
        gap = f", replay gap {replay.max_gap:.1e}" if replay is not None else ""
        ok = report.ok and where == device.split(":")[0] and replay is not None
        return ok, f"{envs}x{steps} steps on {where}{gap}" + ("" if report.ok else f"; {report.errors[0].title}")

    return run


def plan(device: str) -> list[Step]:
    """The three steps for ``device``: the real check on CUDA, a tiny dry run on ``"cpu"``."""
    dry = device == "cpu"
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu"]
    bench = [sys.executable, "-m", "workbench", "bench", "--device", device, "--quick"]
    return [
        Step("gpu tests", command=pytest + (["--collect-only"] if dry else []) + ["tests"], summarize=_pytest_summary),
        Step("rollout", run=_rollout_step(device, envs=2 if dry else 8, steps=30 if dry else 500)),
        Step("bench", command=bench + (["--sections", "python"] if dry else []), summarize=_bench_summary),
    ]


def _run_step(step: Step, timeout: float) -> StepResult:
    start = time.perf_counter()
    if step.run is not None:
        try:
            ok, detail = step.run()
        except Exception as error:  # the check reports a failure, it does not crash on one
            ok, detail = False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return StepResult(step.name, ok, detail, time.perf_counter() - start)
    if timeout <= 0:
        return StepResult(step.name, False, "not run: the time budget is spent")
    try:
        done = subprocess.run(step.command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        return StepResult(step.name, False, f"timed out after {timeout:.0f} s", time.perf_counter() - start, out[-4000:])
    output = done.stdout + done.stderr
    ok, detail = step.summarize(done.returncode, output)
    return StepResult(step.name, ok, detail, time.perf_counter() - start, output[-4000:])


def run_checks(device: str = "cuda", *, budget_s: float = BUDGET_S, steps: list[Step] | None = None,
               out=print) -> list[StepResult]:
    """Runs the steps of :func:`plan` one after the other within ``budget_s``; prints a line per step.

    A subprocess step gets what is left of the budget as its timeout and is not
    started once it is spent; the in-process rollout (seconds) always runs.
    """
    deadline = time.monotonic() + budget_s
    results = []
    for step in steps if steps is not None else plan(device):
        result = _run_step(step, deadline - time.monotonic())
        results.append(result)
        out(f"  {result.name}: {'ok' if result.ok else 'FAILED'} ({result.detail}; {result.seconds:.0f} s)")
        if not result.ok and result.output:
            out("    " + "\n    ".join(result.output.strip().splitlines()[-15:]))
    return results


def summary(device: str, results: list[StepResult], seconds: float) -> str:
    """The one summary line."""
    passed = sum(r.ok for r in results)
    what = "; ".join(f"{r.name} {'ok' if r.ok else 'FAILED'} ({r.detail})" for r in results)
    verdict = "passed" if passed == len(results) else "FAILED"
    return f"check-gpu on {device}: {verdict}, {passed}/{len(results)} steps: {what}; {seconds:.0f} s"
