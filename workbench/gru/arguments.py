"""What ``GRUModule``'s constructor accepts: each argument checked, with a message naming it.

The checks of :class:`~workbench.gru.module.GRUModule`'s arguments (backend, layer sizes,
a ``gru=`` to wrap, keys, gate recording), kept apart from the module's forward so that
both read in one sitting.

Examples:
    >>> check_backend("scan")
    'loop'
    >>> check_keys("obs", None, "y", None, ["h"], [("next", "h")])
    (['obs', 'h', 'is_init'], ['y', ('next', 'h')])
"""

from __future__ import annotations

import torch
from tensordict import unravel_key_list
from torch import nn

from .cell import PythonGRU

__all__ = [
    "BACKENDS",
    "BACKEND_ALIASES",
    "DEFAULT_NUM_LAYERS",
    "DEFAULT_DROPOUT",
    "NestedKey",
    "check_backend",
    "make_layer",
    "check_given_layer",
    "check_keys",
    "check_gates_supported",
]

NestedKey = str | tuple[str, ...]

BACKENDS = ("auto", "native", "packed", "fused", "loop")
"""the values ``recurrent_backend`` takes (see :class:`~workbench.gru.module.GRUModule`)"""

BACKEND_ALIASES = {"pad": "native", "scan": "loop"}
"""torchrl's names, accepted too"""


class _DefaultInt(int):
    """An int default that can be told apart from the same value passed explicitly."""

    def __repr__(self) -> str:
        return int.__repr__(self)


DEFAULT_NUM_LAYERS = _DefaultInt(1)
DEFAULT_DROPOUT = _DefaultInt(0)


def _same_device(requested: torch.device | str | int, actual: torch.device) -> bool:
    requested = torch.device(requested)
    if requested.type != actual.type:
        return False
    return requested.index is None or actual.index is None or requested.index == actual.index


def check_backend(backend: str) -> str:
    """The backend name ``recurrent_backend`` asks for (torchrl's aliases resolved); raises for an unknown one."""
    backend = BACKEND_ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        hint = " (triton kernels are not part of GRU Workbench)" if backend == "triton" else ""
        raise ValueError(
            f"GRUModule: 'recurrent_backend' must be one of {list(BACKENDS)} "
            f"(or torchrl's aliases {list(BACKEND_ALIASES)}); got {backend!r}{hint}."
        )
    return backend

def make_layer(input_size, hidden_size, num_layers, bias, dropout, python_based, device, dtype) -> nn.Module:
    """The layer the sizes describe: ``torch.nn.GRU``, or our :class:`PythonGRU` with ``python_based``."""
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"GRUModule: '{name}' must be a positive int (or pass gru=...); got {value!r}.")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"GRUModule: 'num_layers' must be an int >= 1; got {num_layers!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"GRUModule: 'dropout' must be a float in [0, 1); got {dropout!r}.")
    if not isinstance(bias, bool):
        raise ValueError(f"GRUModule: 'bias' must be a bool; got {bias!r}.")
    layer_cls = PythonGRU if python_based else nn.GRU
    return layer_cls(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=int(num_layers),
        bias=bias,
        dropout=float(dropout),
        batch_first=True,
        device=device,
        dtype=dtype,
    )

def check_given_layer(gru, input_size, hidden_size, num_layers, bias, dropout, python_based, device, dtype) -> None:
    """Refuses a ``gru=`` that cannot be wrapped, or that comes with layer arguments (the spec: exclusive)."""
    if not isinstance(gru, (nn.GRU, PythonGRU)):
        raise TypeError(f"GRUModule: 'gru' must be a torch.nn.GRU or workbench PythonGRU; got {type(gru).__name__}.")
    if not gru.batch_first:
        raise ValueError("GRUModule: the 'gru' passed must have batch_first=True; got batch_first=False.")
    if gru.bidirectional:
        raise ValueError("GRUModule: the 'gru' passed must not be bidirectional.")
    # the spec: 'gru' is exclusive with the other nn.GRU arguments, even when their values agree
    layer_args = []
    if input_size is not None:
        layer_args.append(f"input_size={input_size!r} (gru has {gru.input_size})")
    if hidden_size is not None:
        layer_args.append(f"hidden_size={hidden_size!r} (gru has {gru.hidden_size})")
    if num_layers is not DEFAULT_NUM_LAYERS:
        layer_args.append(f"num_layers={num_layers!r} (gru has {gru.num_layers})")
    if dropout is not DEFAULT_DROPOUT:
        layer_args.append(f"dropout={dropout!r} (gru has {gru.dropout})")
    if bias is not True:
        layer_args.append(f"bias={bias!r} (gru has bias={gru.bias})")
    if layer_args:
        raise ValueError(
            "GRUModule: 'gru' is exclusive with the layer arguments input_size, hidden_size, num_layers, bias "
            "and dropout (the layer passed defines them); got " + "; ".join(layer_args)
            + ". Pass either gru=... or the layer arguments."
        )
    conflicts = []
    if python_based and not isinstance(gru, PythonGRU):
        conflicts.append("python_based=True (gru is a torch.nn.GRU; call make_python_based() afterwards)")
    param = next(gru.parameters(), None)
    if param is not None and device is not None and not _same_device(device, param.device):
        conflicts.append(f"device={device!r} (gru is on {param.device}; move it with .to())")
    if param is not None and dtype is not None and dtype != param.dtype:
        conflicts.append(f"dtype={dtype} (gru is {param.dtype})")
    if conflicts:
        raise ValueError(
            "GRUModule: arguments conflict with the 'gru' passed, which defines the layer: "
            + "; ".join(conflicts)
            + ". Pass either gru=... or the layer arguments."
        )

def check_keys(in_key, in_keys, out_key, out_keys, default_in: list, default_out: list) -> tuple[list, list]:
    """``(in_keys + ["is_init"], out_keys)`` from the key arguments; raises naming what is wrong."""
    if (in_key is None) == (in_keys is None):
        raise ValueError(
            f"GRUModule: pass exactly one of 'in_key' or 'in_keys'; got in_key={in_key!r}, in_keys={in_keys!r}."
        )
    if in_key is not None:
        in_keys = [in_key, *default_in]
    if (out_key is None) == (out_keys is None):
        raise ValueError(
            f"GRUModule: pass exactly one of 'out_key' or 'out_keys'; got out_key={out_key!r}, out_keys={out_keys!r}."
        )
    if out_key is not None:
        out_keys = [out_key, *default_out]
    if isinstance(in_keys, (str, tuple)) or isinstance(out_keys, (str, tuple)):
        raise ValueError(
            "GRUModule: 'in_keys' and 'out_keys' must be lists, e.g. in_keys=['observation', 'hidden'], "
            f"out_keys=['features', ('next', 'hidden')]; got in_keys={in_keys!r}, out_keys={out_keys!r}."
        )
    in_keys = unravel_key_list(list(in_keys))
    out_keys = unravel_key_list(list(out_keys))
    if len(in_keys) == 3 and in_keys[2] == "is_init":
        in_keys = in_keys[:2]
    if len(in_keys) != 2 or "is_init" in in_keys or in_keys[0] == in_keys[1]:
        raise ValueError(
            "GRUModule: 'in_keys' must be [value_key, hidden_key] (optionally followed by 'is_init'), "
            f"two different keys, neither of them 'is_init'; got {in_keys!r}."
        )
    if len(out_keys) != 2 or out_keys[0] == out_keys[1]:
        raise ValueError(
            "GRUModule: 'out_keys' must be [output_key, next_hidden_key], two different keys, "
            f"e.g. ['features', ('next', 'recurrent_state')]; got {out_keys!r}."
        )
    return [*in_keys, "is_init"], out_keys

def check_gates_supported(gates_key, gru: nn.Module) -> None:
    """Gates can be recorded by our Python cell only."""
    if gates_key is not None and not isinstance(gru, PythonGRU):
        raise ValueError(
            f"GRUModule: gates_key={gates_key!r} needs the Python cell (python_based=True or "
            "make_python_based()); the native GRU does not expose its gates."
        )
