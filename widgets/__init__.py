"""Interactive ipywidgets panels for the GRU Workbench.

Panels are thin: controls are read into a config (``PolicySpec``, ``EnvSpec``...), one
``workbench`` call does the work, and a ``workbench.figures`` builder draws the result. Panels
talk through events (``on_policy``, ``on_rollout``, ``on_figures``); :class:`WorkbenchApp`
wires them together:

    >>> from widgets import WorkbenchApp     # doctest: +SKIP
    >>> app = WorkbenchApp(); app            # doctest: +SKIP

Names are imported on first use, so ``import widgets`` alone stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "WorkbenchApp",
    "Panel",
    "PolicyPanel",
    "BuiltPolicy",
    "RolloutPanel",
    "RolloutResult",
    "ExplorerPanel",
    "TimingPanel",
    "SweepPanel",
    "TrialCheckpoint",
    "ExportPanel",
    "ComparePanel",
    "SessionBar",
    "LiveFigure",
    "TrainingCurve",
    "PlotlyView",
    "Job",
    "JobControls",
]

_WHERE = {
    "WorkbenchApp": "app",
    "Panel": "_panel",
    "PolicyPanel": "policy_panel",
    "BuiltPolicy": "policy_panel",
    "RolloutPanel": "rollout_panel",
    "RolloutResult": "rollout_panel",
    "ExplorerPanel": "explorer_panel",
    "TimingPanel": "timing_panel",
    "SweepPanel": "sweep_panel",
    "TrialCheckpoint": "sweep_panel",
    "ExportPanel": "export_panel",
    "ComparePanel": "compare_panel",
    "SessionBar": "session_bar",
    "LiveFigure": "live",
    "TrainingCurve": "live",
    "PlotlyView": "plotly_view",
    "Job": "jobs",
    "JobControls": "jobs",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'widgets' has no attribute {name!r}; it has {__all__}.")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
