"""Background jobs of the panels (widgets/jobs.py), headless: Cancel, Interrupt, refusal, errors, progress.

The rollout panel is driven with a stand-in for ``Session.rollout`` that takes real steps one call at a
time (``workbench.rollout.rollout`` for the steps done so far) and follows the cancellation contract
(check between steps, ``Cancelled(partial=...)``), so each step can be held at a gate; one test runs the
library's own cancellable rollout. Nothing here asserts on time: cancels are counted in steps.
"""

from __future__ import annotations

import inspect
import os
import signal
import threading

import pytest
import torch

from widgets import jobs
from widgets.app import WorkbenchApp
from widgets.jobs import Job, JobControls, install_interrupt_handler, progress_text
from widgets.policy_panel import PolicyPanel
from widgets.rollout_panel import RolloutPanel
from widgets.timing_panel import TimingPanel
from workbench import session as session_module
from workbench.envs import EnvSpec
from workbench.errors import Cancelled
from workbench.jobs import check, report
from workbench.keys import KEYS
from workbench.policy import PolicySpec
from workbench.rollout import rollout as library_rollout
from workbench.session import Session

SPEC = PolicySpec(hidden_size=8, python_based=True, record_gates=True)
ENV = EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, max_steps=25, seed=0)
WAIT = 120  # seconds a test waits for a job before it fails (a hang, not a timing check)


@pytest.fixture(autouse=True)
def sigint_restored():
    """Every test leaves the process's SIGINT handler as it found it."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


class SteppedRollout:
    """A stand-in for ``Session.rollout`` with the library's signature: ``steps`` real steps, one per check.

    ``gate``: unless set, each step waits for it once done (``release()`` opens it); ``fail_at``: raises
    there; ``started``: set once the first step is done. On cancel the steps done so far are the ``partial``.
    """

    def __init__(self, *, gated: bool = False, fail_at: int | None = None):
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.fail_at, self.started, self.calls = fail_at, threading.Event(), 0

    def release(self) -> None:
        self.gate.set()

    def __call__(self, session: Session, steps: int, *, seed=None, progress=True, deterministic=False,
                 cancel=None, on_progress=None, **_):
        self.calls += 1

        def real(n):
            return library_rollout(session.policy, session.env, n, seed=seed, progress=False,
                                   deterministic=deterministic, device=session.device, check=False)

        for i in range(steps):
            check(cancel, "rollout", done=i, total=steps, partial=real(i) if i else None)
            if i == self.fail_at:
                raise RuntimeError(f"the environment exploded at step {i}")
            report(on_progress, i + 1, steps)
            self.started.set()
            self.gate.wait(WAIT)
        session.trajectory = real(steps)
        return session.trajectory


@pytest.fixture
def panel() -> RolloutPanel:
    """A rollout panel with a built policy."""
    panel = RolloutPanel(steps=40, env_spec=ENV, device="cpu")
    policy_panel = PolicyPanel(SPEC, ENV)
    policy_panel.on_policy(panel.set_policy)
    policy_panel.build_button.click()
    assert panel.built is not None
    return panel


def stepped(monkeypatch, **options) -> SteppedRollout:
    fake = SteppedRollout(**options)
    monkeypatch.setattr(Session, "rollout", lambda self, steps, **kw: fake(self, steps, **kw))
    return fake


def cancel_at(panel, step: int, reason: str = "test") -> list[int]:
    """Makes the panel's progress callback cancel its job once ``step`` steps are done; returns the steps seen."""
    seen, update = [], panel.job_controls.update

    def update_then_cancel(done, total):
        seen.append(done)
        update(done, total)
        if done >= step:
            panel.job.cancel(reason)

    panel.job_controls.update = update_then_cancel
    return seen


def closed_envs(monkeypatch) -> list:
    """Records every environment the sessions close (workers released)."""
    closed, close = [], session_module.close_env
    monkeypatch.setattr(session_module, "close_env", lambda env: (closed.append(env), close(env))[1])
    return closed


# ---------------------------------------------------------------------------------------------- the Job
def test_job_states_result_error_and_progress():
    """done / failed / cancelled, with result, error, partial and the last progress."""
    def count(n, *, cancel=None, on_progress=None, fail=False):
        for i in range(n):
            check(cancel, "count", done=i, total=n, partial=list(range(i)))
            if fail and i == 2:
                raise ValueError("bad count")
            report(on_progress, i + 1, n)
        return n

    ok = Job(lambda **kw: count(4, **kw)).start()
    assert ok.wait(WAIT) and (ok.state, ok.result, ok.error, ok.done, ok.total) == ("done", 4, None, 4, 4)
    bad = Job(lambda **kw: count(4, fail=True, **kw)).start()
    assert bad.wait(WAIT) and bad.state == "failed" and str(bad.error) == "bad count" and bad.done == 2
    token_seen = []
    stop = Job(lambda cancel, on_progress: count(10, cancel=cancel, on_progress=lambda d, t: (
        token_seen.append(d), cancel.cancel("at 3") if d == 3 else None)))
    stop.start()
    assert stop.wait(WAIT) and stop.state == "cancelled" and stop.partial == [0, 1, 2]
    assert isinstance(stop.error, Cancelled) and stop.error.done == 3 and token_seen == [1, 2, 3]
    with pytest.raises(RuntimeError, match="start\\(\\) runs a job once"):
        stop.start()


def test_on_end_runs_once_on_the_kernel_loop_or_in_wait(monkeypatch):
    """In a kernel the worker hands on_end to the main loop; a wait() on the main thread runs it first,
    and the loop's callback then does nothing (on_end runs exactly once)."""
    callbacks, ends = [], []

    class Loop:
        def add_callback(self, fn):
            callbacks.append(fn)

    monkeypatch.setattr(jobs, "kernel_loop", lambda: Loop())
    job = Job(lambda cancel, on_progress: 7, on_end=lambda j: ends.append(threading.current_thread().name)).start()
    assert job.wait(WAIT) and ends == ["MainThread"] and len(callbacks) == 1
    callbacks[0]()
    assert ends == ["MainThread"]
    # nobody waits: the loop's callback (on the main thread) ends it
    job = Job(lambda cancel, on_progress: 8, on_end=lambda j: ends.append("loop")).start()
    job._work_ended.wait(WAIT)
    assert not job.ended
    callbacks[1]()
    assert job.ended and ends[-1] == "loop"


def test_progress_text_and_throttled_controls():
    """The label's values, and at most one redraw per min_interval (plus the last step)."""
    assert progress_text(12_345, 100_000, 10.0) == "12,345 / 100,000 steps · 1,234 steps/s · 1:11 left"
    assert progress_text(100, 100, 4.0, "cases") == "100 / 100 cases · 25 cases/s · 0 s left"
    assert progress_text(7200, 10_000, 1.0) == "7,200 / 10,000 steps · 7,200 steps/s · 0 s left"
    assert progress_text(1, 10_000, 1.0) == "1 / 10,000 steps · 1.0 steps/s · 2:46:39 left"
    controls = JobControls(min_interval=3600)  # one redraw per hour: only the first and the last get through
    drawn = []
    controls.label.observe(lambda change: drawn.append(change["new"]), "value")
    job = Job(lambda cancel, on_progress: [on_progress(i, 1000) for i in range(1, 1001)] and None,
              on_progress=controls.update)
    controls.attach(job)
    assert controls.layout.display == "flex" and controls.text == "0 steps · starting…"
    drawn.clear()
    job.start().wait(WAIT)
    assert len(drawn) == 2 and "1,000 / 1,000 steps" in drawn[-1]
    assert (controls.bar.value, controls.bar.max) == (1000, 1000)
    controls.finish()
    assert controls.layout.display == "none"


# ---------------------------------------------------------------------------------------------- rollout panel
def test_cancel_stops_within_a_step_keeps_the_partial_and_the_panel_works(panel, monkeypatch):
    """Cancel at step 12 of 40: the kept trajectory has 12 steps (+1 at most: the step running then), the
    panel says so, the explorer listener gets it, the env is closed, the button is back; a rerun is whole."""
    stepped(monkeypatch)
    closed = closed_envs(monkeypatch)
    got = []
    panel.on_rollout(got.append)
    seen = cancel_at(panel, 12, "Cancel button")
    job = panel.start()
    assert job is not None and panel.run_button.disabled
    assert panel.wait(WAIT) and job.state == "cancelled"
    kept = panel.trajectory.batch_size[1]
    assert 12 <= kept <= 13 and max(seen) <= 13
    assert panel.message == (f"Rollout cancelled (Cancel button) after {kept} of 40 steps: the {kept} steps done "
                             f"are kept and shown in the explorer.")
    assert got[-1].cancelled and got[-1].trajectory.batch_size == torch.Size([2, kept]) and got[-1].report is None
    assert "Diagnostics skipped" in panel.banner.value and f"× {kept} steps" in panel.summary.value
    assert len(closed) == 1 and not panel.run_button.disabled and panel.job_controls.layout.display == "none"
    panel.job_controls.update = JobControls.update.__get__(panel.job_controls)
    panel.run()
    assert panel.last_error is None and panel.trajectory.batch_size == torch.Size([2, 40])
    assert panel.report is not None and "All checks passed" in panel.banner.value and len(closed) == 2


def test_cancel_before_the_first_step_keeps_nothing(panel, monkeypatch):
    """Cancelled before any step: nothing kept, said so; the previous result stays."""
    stepped(monkeypatch)
    panel.run()
    before = panel.result
    cancel_at(panel, 0)
    original = Job.start

    def start_cancelled(job):
        job.cancel("test")
        return original(job)

    monkeypatch.setattr(Job, "start", start_cancelled)
    panel.run()
    assert panel.message == "Rollout cancelled (test) after 0 of 40 steps: nothing kept; the explorer keeps the " \
                            "previous rollout."
    assert panel.result is before and not panel.run_button.disabled


def test_second_job_is_refused_with_a_message(panel, monkeypatch):
    """While a rollout runs, another start (button or code) is refused in the panel; the first one goes on."""
    fake = stepped(monkeypatch, gated=True)
    first = panel.start()
    assert fake.started.wait(WAIT)  # the first step is done and waits at the gate
    assert panel.start() is None and panel.running
    assert panel.message.startswith("A rollout is already running (") and "click Cancel" in panel.message
    panel.run()  # refused too, returns at once
    assert panel.job is first and fake.calls == 1
    fake.release()
    assert panel.wait(WAIT) and first.state == "done" and panel.trajectory.batch_size[1] == 40
    assert panel.message.startswith("Rollout done: 2 env(s) × 40 steps")


def test_failing_job_shows_its_error_and_the_panel_still_works(panel, monkeypatch):
    fake = stepped(monkeypatch, fail_at=3)
    closed = closed_envs(monkeypatch)
    panel.run()
    assert panel.message == "RuntimeError: the environment exploded at step 3"
    assert isinstance(panel.last_error, RuntimeError) and "traceback" in panel.status.value
    assert not panel.run_button.disabled and panel.result is None and len(closed) == 1
    fake.fail_at = None
    panel.run()
    assert panel.last_error is None and panel.trajectory.batch_size[1] == 40


def test_sigint_while_the_kernel_is_idle_cancels_the_job(panel, monkeypatch):
    """Kernel → Interrupt while idle: ipykernel ignores SIGINT then (SIG_IGN); the jobs' handler cancels
    the rollout anyway, and nothing else happens (no KeyboardInterrupt)."""
    fake = stepped(monkeypatch, gated=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job = panel.start()
    assert fake.started.wait(WAIT)
    os.kill(os.getpid(), signal.SIGINT)
    fake.release()
    assert panel.wait(WAIT) and job.state == "cancelled" and job.token.reason == "Kernel interrupt"
    assert panel.message.startswith("Rollout cancelled (Kernel interrupt) after ")
    assert panel.trajectory.batch_size[1] == job.error.done < 40
    assert signal.getsignal(signal.SIGINT).previous is signal.SIG_IGN


def test_sigint_during_run_cancels_and_reraises(panel, monkeypatch):
    """panel.run() (a cell running app.run()) interrupted: the job is cancelled, the panel says what it kept,
    and the KeyboardInterrupt reaches the caller."""
    fake = stepped(monkeypatch, gated=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt():
        fake.started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGINT)
        fake.release()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        panel.run()
    panel.wait(WAIT)  # run() waited up to 1 s for the job to stop; a loaded machine may need longer
    assert panel.job.ended and panel.job.state == "cancelled" and panel.job.token.reason == "Kernel interrupt"
    assert panel.message == ("Rollout cancelled (Kernel interrupt) after 1 of 40 steps: the 1 step done is kept "
                             "and shown in the explorer.")
    assert not panel.run_button.disabled


def test_kernel_hooks_keep_the_handler_across_message_swaps():
    """ipykernel restores ``saved_sigint_handler`` after each message and installs ``default_int_handler``
    before each (kernelbase.py pre/post_handler_hook): both are wrapped."""
    class FakeKernel:  # what ipykernel 6/7's kernelbase does around each message
        def __init__(self):
            self.saved_sigint_handler = signal.SIG_IGN

        def pre_handler_hook(self):
            self.saved_sigint_handler = signal.signal(signal.SIGINT, signal.default_int_handler)

        def post_handler_hook(self):
            signal.signal(signal.SIGINT, self.saved_sigint_handler)

    kernel = FakeKernel()
    jobs._hook_kernel(kernel)
    assert kernel.saved_sigint_handler.previous is signal.SIG_IGN
    kernel.post_handler_hook()  # idle
    assert signal.getsignal(signal.SIGINT).previous is signal.SIG_IGN
    kernel.pre_handler_hook()  # a message runs
    assert signal.getsignal(signal.SIGINT).previous is signal.default_int_handler
    kernel.post_handler_hook()
    assert signal.getsignal(signal.SIGINT).previous is signal.SIG_IGN
    assert install_interrupt_handler() and signal.getsignal(signal.SIGINT).previous is signal.SIG_IGN  # not twice


@pytest.mark.skipif("cancel" not in inspect.signature(Session.rollout).parameters,
                    reason="Session.rollout has no cancel= yet (issue 12, item 1)")
def test_library_rollout_cancel_keeps_the_steps_done(panel):
    """The real cancellable rollout: cancelled at step 30 of 5,000, it keeps 30 steps (+1 at most)."""
    panel.steps.value = 5000
    cancel_at(panel, 30)
    panel.run()
    kept = panel.trajectory.batch_size[1]
    assert panel.job.state == "cancelled" and 30 <= kept <= 31, panel.message
    assert panel.trajectory.get(KEYS.hidden).shape[:2] == torch.Size([2, kept])
    assert f"the {kept} steps done are kept" in panel.message


# ---------------------------------------------------------------------------------------------- timing, app
def test_timing_cancel_keeps_and_draws_the_cases_measured():
    """Cancel after the first of three cases: its records are kept and drawn; the button is back."""
    panel = TimingPanel(backends=("torch", "workbench:loop"), batch=(2,), steps=(4, 8, 16), hidden=(4,),
                        reset_rate=(0.0,), passes=("forward",), rounds=2, block_s=0.0005)
    cancel_at(panel, 1)
    panel.run()
    assert panel.job.state == "cancelled" and [r["steps"] for r in panel.records] == [4, 4]
    assert panel.message == ("Timing cancelled (test) after 1 of 3 case(s): the 2 measurements done are kept "
                             "and drawn.")
    assert list(panel.figures["timing"].data[0].x) == [4] and not panel.run_button.disabled


def test_app_run_is_synchronous_and_cancel_reaches_every_panel(monkeypatch):
    """app.run() returns with the trajectory in the explorer; app.cancel() cancels the running jobs."""
    app = WorkbenchApp(SPEC, ENV, steps=30, device="cpu")
    app.build()
    app.run()
    assert app.trajectory.batch_size == torch.Size([2, 30]) and app.explorer_panel.trajectory is app.trajectory
    fake = stepped(monkeypatch, gated=True)
    job = app.rollout_panel.start()
    app.cancel()
    fake.release()
    assert app.rollout_panel.wait(WAIT) and job.state == "cancelled" and job.token.reason == "app.cancel()"
    assert app.errors == {}


def test_a_timing_runs_alone(panel, monkeypatch):
    """A timing does not start while a rollout runs (it would measure a busy machine), and nothing starts in
    another panel while a timing runs; both say why; the running job goes on."""
    fake = stepped(monkeypatch, gated=True)
    timing = TimingPanel(backends=("workbench:fused",), steps=(8,), hidden=(8,), reset_rate=(0.0,), passes=("forward",),
                         rounds=1, block_s=0.001)
    first = panel.start()
    assert fake.started.wait(WAIT)
    assert timing.start() is None and timing.job is None
    assert "rollout is running in another panel" in timing.message and "timings run alone" in timing.message
    fake.release()
    assert panel.wait(WAIT) and first.state == "done"
    gate = threading.Event()
    real = jobs.Job._work

    def held(job):  # the timing job waits here until the test lets it go
        gate.wait(WAIT)
        real(job)

    monkeypatch.setattr(jobs.Job, "_work", held)
    job = timing.start()
    assert job is not None and job.exclusive
    assert panel.start() is None and "timing grid is running in another panel" in panel.message
    gate.set()
    assert timing.wait(WAIT) and job.state == "done" and timing.records
