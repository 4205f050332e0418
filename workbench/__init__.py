"""GRU Workbench: see inside recurrent RL policies.

The core library: tensors and numbers, no UI. ``import workbench`` loads
neither ipywidgets nor plotly, nor torch until a name that needs it is used:
the GRU names below are imported on first access, so ``python -m workbench
--help`` stays fast.

Examples:
    >>> from workbench import GRUModule, set_recurrent_mode
    >>> module = GRUModule(4, 16, in_key="observation", out_key="features")
    >>> module.in_keys
    ['observation', 'recurrent_state', 'is_init']
"""

from importlib import import_module

from .errors import WorkbenchError

__version__ = "0.1.0"

__all__ = [
    # the GRU module library
    "GRUModule",
    "PythonGRU",
    "recurrent_mode",
    "set_recurrent_mode",
    # errors
    "WorkbenchError",
]

_LAZY = {"GRUModule": ".gru", "PythonGRU": ".gru", "recurrent_mode": ".gru", "set_recurrent_mode": ".gru",
         "gru": ".gru"}
"""Public names imported on first access (they load torch), by the module that owns them."""


def __getattr__(name: str):
    """Imports a :data:`_LAZY` name on first access (PEP 562) and keeps it."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(_LAZY[name], __name__)
    value = module if name == "gru" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
