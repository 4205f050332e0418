"""Background work for the panels: a :class:`Job` on a daemon thread, its :class:`JobControls`, and Interrupt.

Long library calls follow the contract of :mod:`workbench.jobs` (``cancel=`` a token, checked between
steps; ``on_progress(done, total)``; :class:`~workbench.errors.Cancelled` with the finished part). A
:class:`Job` runs one of them, ``fn(cancel=token, on_progress=callback)``, on a daemon thread, so the
kernel stays free for clicks (Cancel among them):

- states: ``"pending"`` → ``"running"`` → ``"done"``, ``"cancelled"`` (``fn`` raised ``Cancelled``) or
  ``"failed"`` (any other exception); :attr:`Job.result`, :attr:`Job.error` and :attr:`Job.partial` hold
  the outcome;
- ``on_end(job)`` runs once when ``fn`` returned: in a kernel, on the kernel's main thread (handed to its
  event loop, so panel updates never race with the callbacks of other widgets); outside a kernel, or
  when someone waits for the job, in the thread of :meth:`Job.wait`, else in the worker;
- :meth:`Job.wait` blocks until the job ended; Ctrl-C (or Kernel → Interrupt) while waiting cancels the
  job, waits up to ``grace`` seconds for it to stop and re-raises the ``KeyboardInterrupt``.

Kernel → Interrupt sends SIGINT. ipykernel ignores SIGINT while idle and swaps in
``signal.default_int_handler`` around each message it handles (``pre_handler_hook`` /
``post_handler_hook`` in ``ipykernel/kernelbase.py``), so a background job would never hear it.
:func:`install_interrupt_handler` (called by :meth:`Job.start` on the main thread) installs a handler
that cancels every running job and then does what the handler it replaced did (nothing while the kernel
is idle; ``KeyboardInterrupt`` in a running cell), and keeps it installed across ipykernel's swaps.

Examples:
    >>> from workbench.jobs import check, report
    >>> def count(n, *, cancel=None, on_progress=None):
    ...     for i in range(n):
    ...         check(cancel, "count", done=i, total=n)
    ...         report(on_progress, i + 1, n)
    ...     return n
    >>> job = Job(lambda **kw: count(3, **kw), name="count").start()
    >>> job.wait(), job.state, job.result, (job.done, job.total)
    (True, 'done', 3, (3, 3))
    >>> progress_text(1234, 10000, 2.0, "steps")
    '1,234 / 10,000 steps · 617 steps/s · 14 s left'
"""

from __future__ import annotations

import html
import signal
import threading
import time
from typing import Any, Callable

import ipywidgets as w

from workbench.errors import Cancelled
from workbench.jobs import CancelToken

__all__ = ["Job", "JobControls", "install_interrupt_handler", "running_jobs", "cancel_all", "progress_text",
           "kernel_loop"]

STATES = ("pending", "running", "done", "cancelled", "failed")

_lock = threading.RLock()
_running: set["Job"] = set()


def running_jobs() -> list["Job"]:
    """The jobs whose work runs now (any panel)."""
    with _lock:
        return list(_running)


def cancel_all(reason: str = "cancelled") -> int:
    """Cancels every running job; returns how many there were."""
    jobs = running_jobs()
    for job in jobs:
        job.cancel(reason)
    return len(jobs)


class Job:
    """``fn(cancel=token, on_progress=callback)`` on a daemon thread, with its state and outcome.

    Args:
        fn: the work; it takes the keyword arguments ``cancel`` (a :class:`~workbench.jobs.CancelToken`)
            and ``on_progress`` (``on_progress(done, total)``) and returns the result.

    Keyword Args:
        name: what the job does, for messages ("rollout").
        on_progress: ``on_progress(done, total)`` after each step of ``fn`` (in the worker thread; keep it
            cheap: :class:`JobControls` throttles its redraws). An exception there is kept in
            :attr:`progress_error` and the work goes on.
        on_end: ``on_end(job)`` once ``fn`` returned or raised (see the module's notes on the thread).
        exclusive: the job runs alone (see :attr:`exclusive`).
    """

    def __init__(self, fn: Callable[..., Any], *, name: str = "job",
                 on_progress: Callable[[int, int | None], Any] | None = None,
                 on_end: Callable[["Job"], Any] | None = None, exclusive: bool = False):
        self.fn, self.name, self.on_progress, self.on_end = fn, name, on_progress, on_end
        self.exclusive = exclusive
        """runs alone: no other job starts while it runs, and it starts only when none runs (a timing,
        which other work would distort)"""
        self.token = CancelToken()
        self.state = "pending"
        self.result: Any = None
        self.error: BaseException | None = None
        """the exception ``fn`` raised (a :class:`~workbench.errors.Cancelled` when cancelled)"""
        self.end_error: BaseException | None = None
        """an exception ``on_end`` raised"""
        self.progress_error: BaseException | None = None
        self.done: int = 0
        self.total: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        """``time.perf_counter()`` when ``fn`` returned or raised"""
        self.cancelled_at: float | None = None
        """when :meth:`cancel` was first called"""
        self.closed_at: float | None = None
        """when ``on_end`` finished"""
        self._thread: threading.Thread | None = None
        self._loop = None
        self._work_ended = threading.Event()
        self._ended = threading.Event()
        self._end_claim = threading.Lock()
        self._end_claimed_by: int | None = None

    def __repr__(self) -> str:
        return f"Job({self.name!r}, state={self.state!r}, done={self.done}, total={self.total})"

    # ------------------------------------------------------------------ running
    def start(self) -> "Job":
        """Starts the worker thread (once) and returns the job.

        Called on the main thread of a kernel, it also installs the interrupt handler and notes the
        kernel's event loop, where ``on_end`` will run.
        """
        if self.state != "pending":
            raise RuntimeError(f"Job {self.name!r}: start() runs a job once; it is {self.state}.")
        if threading.current_thread() is threading.main_thread():
            install_interrupt_handler()
            self._loop = kernel_loop()
        self.state = "running"
        self.started_at = time.perf_counter()
        with _lock:
            _running.add(self)
        self._thread = threading.Thread(target=self._work, name=f"workbench-job-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _work(self) -> None:
        try:
            self.result = self.fn(cancel=self.token, on_progress=self._progress)
            self.state = "done"
        except Cancelled as err:
            self.error, self.state = err, "cancelled"
        except BaseException as err:  # shown by whoever ends the job: a worker never dies silently
            self.error, self.state = err, "failed"
        finally:
            self.ended_at = time.perf_counter()
            with _lock:
                _running.discard(self)
            self._work_ended.set()
            loop = self._loop
            if loop is not None:
                try:
                    loop.add_callback(self._end_once)  # the kernel's main thread, when it is free
                except Exception:  # the loop is gone (kernel shutting down): end here
                    self._end_once()
            else:
                self._end_once()

    def _progress(self, done: int, total: int | None) -> None:
        self.done, self.total = int(done), None if total is None else int(total)
        if self.on_progress is not None:
            try:
                self.on_progress(self.done, self.total)
            except Exception as err:  # a broken progress display must not stop the work
                self.progress_error = err

    def _end_once(self) -> None:
        if not self._end_claim.acquire(blocking=False):
            return
        self._end_claimed_by = threading.get_ident()
        try:
            if self.on_end is not None:
                self.on_end(self)
        except BaseException as err:
            self.end_error = err
        finally:
            self.closed_at = time.perf_counter()
            self._ended.set()

    # ------------------------------------------------------------------ asking
    @property
    def running(self) -> bool:
        """Whether the work runs (started, not ended)."""
        return self.state == "running"

    @property
    def ended(self) -> bool:
        """Whether the work ended and ``on_end`` ran."""
        return self._ended.is_set()

    @property
    def partial(self) -> Any:
        """What a cancelled job finished (:attr:`Cancelled.partial <workbench.errors.Cancelled>`), else ``None``."""
        return getattr(self.error, "partial", None) if self.state == "cancelled" else None

    @property
    def seconds(self) -> float:
        """Wall time of the work so far (or in all, once ended)."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.perf_counter()) - self.started_at

    def cancel(self, reason: str = "cancelled") -> None:
        """Asks the work to stop at its next check (any thread; the first reason is kept)."""
        if self.cancelled_at is None:
            self.cancelled_at = time.perf_counter()
        self.token.cancel(reason)

    def wait(self, timeout: float | None = None, *, grace: float = 1.0) -> bool:
        """Blocks until the job ended (``on_end`` included); returns whether it did within ``timeout`` s.

        A ``KeyboardInterrupt`` while waiting (Ctrl-C, Kernel → Interrupt) cancels the job, waits up to
        ``grace`` seconds for it to end (its ``on_end`` runs here) and is re-raised.
        """
        if self._end_claimed_by == threading.get_ident():
            return self._ended.is_set()  # called from on_end itself: do not wait for ourselves
        try:
            if not self._work_ended.wait(timeout):
                return False
        except KeyboardInterrupt:
            self.cancel("KeyboardInterrupt")
            if self._work_ended.wait(grace):
                self._end_once()
            raise
        self._end_once()  # in a kernel the loop cannot run it while this thread waits: end it here
        if self._end_claimed_by == threading.get_ident():
            return True
        return self._ended.wait(timeout)


# ---------------------------------------------------------------------------- Kernel -> Interrupt
class _CancelJobsThenChain:
    """A SIGINT handler: cancels every running job, then does what ``previous`` did."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, signum, frame):
        cancel_all("Kernel interrupt")
        previous = self.previous
        if previous is signal.SIG_IGN:
            return None
        if callable(previous):
            return previous(signum, frame)
        raise KeyboardInterrupt  # SIG_DFL / unknown: Python's own behaviour for SIGINT

    def __repr__(self) -> str:
        return f"<workbench jobs SIGINT handler, then {self.previous!r}>"


def _wrapped(handler) -> Any:
    return handler if isinstance(handler, _CancelJobsThenChain) else _CancelJobsThenChain(handler)


def _kernel():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None) if shell is not None else None


def kernel_loop():
    """The kernel's IO loop (``add_callback`` runs a function on the kernel's main thread), or None outside one."""
    loop = getattr(_kernel(), "io_loop", None)
    return loop if hasattr(loop, "add_callback") else None


def install_interrupt_handler() -> bool:
    """Makes SIGINT cancel the running jobs (main thread only; idempotent); returns whether it is installed.

    The handler in place is wrapped (its behaviour kept after the jobs are cancelled). In an ipykernel,
    the handler it restores after each message (``saved_sigint_handler``: ``SIG_IGN`` while idle) is
    wrapped too, and so is the ``default_int_handler`` it installs before each message
    (``pre_handler_hook``), so an interrupt reaches the jobs whether the kernel is idle or runs a cell.

    Examples:
        >>> import signal
        >>> install_interrupt_handler(), type(signal.getsignal(signal.SIGINT)).__name__
        (True, '_CancelJobsThenChain')
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        signal.signal(signal.SIGINT, _wrapped(signal.getsignal(signal.SIGINT)))
        kernel = _kernel()
        if kernel is not None and not getattr(kernel, "_workbench_jobs_hooked", False):
            _hook_kernel(kernel)
    return True


def _hook_kernel(kernel) -> None:
    """Keeps the handler across ipykernel's per-message swaps (ipykernel 6 and 7: kernelbase.py)."""
    if hasattr(kernel, "saved_sigint_handler"):
        kernel.saved_sigint_handler = _wrapped(kernel.saved_sigint_handler)
    original = getattr(kernel, "pre_handler_hook", None)
    if callable(original):
        def pre_handler_hook():
            original()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, _wrapped(signal.getsignal(signal.SIGINT)))

        kernel.pre_handler_hook = pre_handler_hook
    kernel._workbench_jobs_hooked = True


# ---------------------------------------------------------------------------- the controls
def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{seconds:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def progress_text(done: int, total: int | None, seconds: float, unit: str = "steps") -> str:
    """``done / total unit · rate · time left``: the line :class:`JobControls` shows.

    Examples:
        >>> progress_text(0, 100_000, 0.1)
        '0 / 100,000 steps · starting…'
        >>> progress_text(25_000, 100_000, 20.0)
        '25,000 / 100,000 steps · 1,250 steps/s · 1:00 left'
        >>> progress_text(3, None, 1.5, "cases")
        '3 cases · 2.0 cases/s'
    """
    count = f"{done:,} / {total:,} {unit}" if total is not None else f"{done:,} {unit}"
    if done <= 0 or seconds <= 0:
        return f"{count} · starting…"
    rate = done / seconds
    speed = f"{rate:,.0f} {unit}/s" if rate >= 10 else f"{rate:.1f} {unit}/s"
    if total is None:
        return f"{count} · {speed}"
    return f"{count} · {speed} · {_duration(max(0, total - done) / rate)} left"


class JobControls(w.HBox):
    """A progress bar, a ``done / total · rate · time left`` line and a Cancel button for a panel's job.

    Built once per panel and reused for every job (nothing is displayed anew, so nothing piles up);
    hidden while no job runs. :meth:`update` may be called from the worker thread at every step: it
    redraws at most every ``min_interval`` seconds (and always at the last step).

    Examples:
        >>> controls = JobControls(unit="steps")
        >>> controls.layout.display, controls._dom_classes
        ('none', ('wb-job',))
        >>> job = Job(lambda cancel, on_progress: on_progress(5, 5) or "ok")
        >>> controls.attach(job); _ = job.start(); _ = job.wait(); controls.finish()
        >>> controls.bar.value, controls.bar.max, controls.text.startswith("5 / 5 steps"), controls.layout.display
        (5, 5, True, 'none')
    """

    def __init__(self, *, unit: str = "steps", min_interval: float = 0.1):
        self.unit, self.min_interval = unit, min_interval
        self.bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="240px"))
        self.label = w.HTML("", layout=w.Layout(margin="0 8px"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", tooltip="Stop the work after its current step",
                                      layout=w.Layout(width="auto"))
        self.text = ""
        """the label's line, without markup (for tests)"""
        self.job: Job | None = None
        self._last_draw = float("-inf")
        self._lock = threading.Lock()
        super().__init__([self.bar, self.label, self.cancel_button],
                         layout=w.Layout(display="none", align_items="center", margin="2px 0"))
        self.add_class("wb-job")
        self.cancel_button.on_click(lambda _: self.cancel("Cancel button"))

    def attach(self, job: Job, unit: str | None = None) -> None:
        """Shows the controls for ``job`` (bar at 0, Cancel enabled); call before ``job.start()``."""
        self.job = job
        if unit is not None:
            self.unit = unit
        self._last_draw = float("-inf")
        self.bar.value, self.bar.max, self.bar.bar_style = 0, 1, ""
        self.cancel_button.disabled = False
        self.cancel_button.description = "Cancel"
        self._draw(0, None, 0.0)
        self.layout.display = "flex"

    def update(self, done: int, total: int | None) -> None:
        """``on_progress`` of the job: redraws when ``min_interval`` passed or the work is complete."""
        now = time.perf_counter()
        if now - self._last_draw < self.min_interval and (total is None or done < total):
            return
        self._last_draw = now
        self._draw(done, total, self.job.seconds if self.job is not None else 0.0)

    def _draw(self, done: int, total: int | None, seconds: float) -> None:
        with self._lock:
            if total is not None:
                self.bar.max = max(1, total)
                self.bar.value = min(done, max(1, total))
            self.text = progress_text(done, total, seconds, self.unit)
            self.label.value = f"<span style='font-size:12px;color:#444'>{html.escape(self.text)}</span>"

    def cancel(self, reason: str = "Cancel button") -> None:
        """Cancels the attached job (the Cancel button)."""
        job = self.job
        if job is not None and job.running:
            job.cancel(reason)
            self.cancel_button.disabled = True
            self.cancel_button.description = "Cancelling…"

    def finish(self) -> None:
        """Draws the job's last progress and hides the controls (the panel's message says the rest)."""
        job = self.job
        if job is not None:
            self._draw(job.done, job.total, job.seconds)
        self.layout.display = "none"
