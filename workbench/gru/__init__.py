"""The GRUModule library: a TensorDict-aware GRU for recurrent RL.

- :class:`GRUModule` — the module (keys, modes, primer, backend switching);
- :class:`PythonGRU` — our Python cell with ``torch.nn.GRU``'s parameters;
- :func:`set_recurrent_mode` / :func:`recurrent_mode` — the mode switch shared with torchrl;
- :mod:`workbench.gru.kernels` — the pure tensor kernels.
"""

from .cell import PythonGRU
from .modes import recurrent_mode, set_recurrent_mode
from .module import GRUModule

__all__ = ["GRUModule", "PythonGRU", "recurrent_mode", "set_recurrent_mode"]
