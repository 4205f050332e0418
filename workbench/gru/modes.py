"""The recurrent-mode switch, shared with torchrl.

torchrl's losses wrap their forward in ``torchrl.modules.set_recurrent_mode(True)``
and its RNN modules read ``torchrl.modules.recurrent_mode()``. Our
:class:`set_recurrent_mode` writes that very same process-wide (and
thread/context-local) flag, so the two context managers are interchangeable
and nest in any order.

It also fixes one trap of torchrl 0.14.1's version: there, the value to restore
is kept on the object, so entering one object twice (nested, or from two
threads) restores the wrong mode and can leave recurrent mode switched on. Here
each context (thread or asyncio task) keeps its own stack of previous modes.
"""

from __future__ import annotations

import contextvars
from typing import Any, Literal

from torchrl.modules import recurrent_mode as _torchrl_recurrent_mode
from torchrl.modules import set_recurrent_mode as _TorchRLSetRecurrentMode

from .._compat import get_torchrl_recurrent_mode, set_torchrl_recurrent_mode

__all__ = ["recurrent_mode", "set_recurrent_mode"]

_MODE_NAMES = {"recurrent": True, "sequential": False}


def recurrent_mode() -> bool | None:
    """The mode set by the innermost ``set_recurrent_mode`` (ours or torchrl's), else ``None``.

    Examples:
        >>> recurrent_mode() is None
        True
        >>> with set_recurrent_mode(True):
        ...     recurrent_mode()
        True
    """
    return _torchrl_recurrent_mode()


def _normalize_mode(mode: Any) -> bool | None:
    if mode is None or isinstance(mode, bool):
        return mode
    if isinstance(mode, str) and mode.lower() in _MODE_NAMES:
        return _MODE_NAMES[mode.lower()]
    raise ValueError(
        f"set_recurrent_mode: 'mode' must be True, False, None, 'recurrent' or 'sequential'; got {mode!r}."
    )


# One variable for the whole process: per context (thread, asyncio task) a stack of
# (manager object, mode to restore). A variable per object would leave one entry in
# every context that ever entered it (contextvars are never freed from a context).
_PREVIOUS: contextvars.ContextVar[tuple] = contextvars.ContextVar("workbench_previous_modes", default=())


class set_recurrent_mode(_TorchRLSetRecurrentMode):
    """Context manager and decorator that sets the recurrent mode of GRU modules.

    Args:
        mode: ``True`` or ``"recurrent"`` (whole sequences, time = last batch
            dim), ``False`` or ``"sequential"`` (single steps), ``None`` (each
            module's ``default_recurrent_mode``). Default: ``True``.

    It is a subclass of ``torchrl.modules.set_recurrent_mode`` and sets the same
    flag, so torchrl's modules and losses see it too.

    Examples:
        >>> from torchrl.modules import set_recurrent_mode as torchrl_set
        >>> with torchrl_set(True):
        ...     with set_recurrent_mode("sequential"):
        ...         inner = recurrent_mode()
        ...     outer = recurrent_mode()
        >>> inner, outer, recurrent_mode()
        (False, True, None)
        >>> same = set_recurrent_mode(True)
        >>> with same:
        ...     with same:  # re-entering one object restores correctly
        ...         pass
        ...     still = recurrent_mode()
        >>> still, recurrent_mode()
        (True, None)
    """

    def __init__(self, mode: bool | Literal["recurrent", "sequential"] | None = True) -> None:
        super().__init__(_normalize_mode(mode))

    def __enter__(self) -> None:
        _PREVIOUS.set(_PREVIOUS.get() + ((self, get_torchrl_recurrent_mode()),))
        set_torchrl_recurrent_mode(self.mode)

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        stack = _PREVIOUS.get()
        # the innermost entry of this object (the top of the stack, when contexts nest properly)
        index = next(i for i in range(len(stack) - 1, -1, -1) if stack[i][0] is self)
        _PREVIOUS.set(stack[:index] + stack[index + 1 :])
        set_torchrl_recurrent_mode(stack[index][1])

    def clone(self) -> set_recurrent_mode:
        return type(self)(self.mode)

    def __repr__(self) -> str:
        return f"set_recurrent_mode({self.mode!r})"
