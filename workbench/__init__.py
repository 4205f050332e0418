"""GRU Workbench: see inside recurrent RL policies.

The core library: tensors and numbers, no UI. ``import workbench`` loads
neither ipywidgets nor plotly.

Examples:
    >>> from workbench import GRUModule, set_recurrent_mode
    >>> module = GRUModule(4, 16, in_key="observation", out_key="features")
    >>> module.in_keys
    ['observation', 'recurrent_state', 'is_init']
"""

from .errors import WorkbenchError
from .gru import GRUModule, PythonGRU, recurrent_mode, set_recurrent_mode

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
