"""Stopping long work between its steps, and reporting how far it got: the contract of every long call.

Long library calls (rollouts, timing grids, training, exports) take two keyword arguments:

- ``cancel``: a :class:`CancelToken` (or ``None``). The call runs ``cancel.check()`` between two of
  its steps; once :meth:`CancelToken.cancel` was called (from any thread: a Cancel button, a SIGINT
  handler), ``check`` raises :class:`~workbench.errors.Cancelled`, which the call completes with what
  it finished (``partial``) before letting it propagate.
- ``on_progress``: a callable ``on_progress(done, total)`` (or ``None``), called after each step with
  plain ints; it must be cheap (the widgets throttle their redraws).

The background runner of the widgets (:mod:`widgets.jobs`) builds on this; nothing here imports a UI.

Examples:
    >>> token = CancelToken()
    >>> token.check()                       # not cancelled: returns
    >>> token.cancel("Cancel button")
    >>> token.cancelled, token.reason
    (True, 'Cancel button')
    >>> def count(n, *, cancel=None, on_progress=None):
    ...     done = []
    ...     for i in range(n):
    ...         check(cancel, "count", done=i, total=n, unit="numbers", partial=done)
    ...         done.append(i)
    ...         report(on_progress, i + 1, n)
    ...     return done
    >>> count(3)
    [0, 1, 2]
    >>> try:
    ...     count(3, cancel=token)
    ... except Cancelled as err:
    ...     print(err, err.partial)
    count: cancelled after 0 of 3 numbers []
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from .errors import Cancelled

__all__ = ["CancelToken", "Cancelled", "Progress", "check", "report"]

Progress = Callable[[int, Optional[int]], None]
"""``on_progress(done, total)``: steps finished and planned (``total`` may be ``None``)."""


class CancelToken:
    """A thread-safe "please stop" flag, checked by long work between its steps.

    ``cancel()`` may be called from any thread, any number of times (the first reason is kept).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        """Asks the work to stop at its next check."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until cancelled or ``timeout`` seconds passed; returns :attr:`cancelled` (a sleep that wakes
        on Cancel)."""
        return self._event.wait(timeout)

    def check(self, what: str = "work", **details: Any) -> None:
        """Raises :class:`~workbench.errors.Cancelled` (``what`` and ``details`` go into it) once cancelled."""
        if self._event.is_set():
            raise Cancelled(what, **details)

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled}, reason={self.reason!r})"


def check(cancel: CancelToken | None, what: str = "work", **details: Any) -> None:
    """``cancel.check(what, **details)`` when a token was given (the one line a long loop adds)."""
    if cancel is not None and cancel.cancelled:
        raise Cancelled(what, **details)


def report(on_progress: Progress | None, done: int, total: int | None) -> None:
    """``on_progress(done, total)`` when a callback was given."""
    if on_progress is not None:
        on_progress(done, total)
