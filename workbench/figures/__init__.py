"""Plotly figure builders: one function per figure, the same keywords everywhere.

Every builder takes its data first (a tensor, or a trajectory TensorDict with
the entries of :data:`workbench.keys.KEYS`), then keyword-only options, among
them the shared ``env=0``, ``title=None``, ``height=None``, ``width=None`` and
``template="plotly_white"``. Each returns a :class:`plotly.graph_objects.Figure`
and never displays it. The numbers come from :mod:`workbench.hidden` and
:mod:`workbench.probes`; the shared look (reset lines, episode bands) from ``_style``.

Builders by topic: :mod:`.hidden` (heatmap, norm, aligned units), :mod:`.pca`,
:mod:`.gates`, :mod:`.replay` (divergence), :mod:`.probes`, :mod:`.timing`,
:mod:`.training`, :mod:`.sweep` (a sweep's records: table, heatmap, probes, curves); :mod:`.marks` moves the marks a panel updates per interaction
(time cursor, PCA cursor, unit outlines, time zoom).

Examples:
    >>> import torch
    >>> h = torch.tanh(torch.randn(2, 12, 1, 4, generator=torch.Generator().manual_seed(0)))
    >>> is_init = torch.zeros(2, 12, 1, dtype=torch.bool); is_init[:, ::5] = True
    >>> fig = set_time_cursor(hidden_heatmap(h, is_init=is_init), 3)
    >>> fig.data[0].z.shape, [s.name for s in fig.layout.shapes].count("reset"), fig.layout.shapes[-1].name
    ((4, 12), 2, 'cursor')
"""

from __future__ import annotations

from ._style import TEMPLATE
from .gates import gates_figure
from .hidden import aligned_units_figure, hidden_heatmap, norm_figure
from .marks import outline_units, set_pca_cursor, set_time_cursor, zoom_time
from .pca import pca_figure, pca_groups_figure
from .probes import probe_figure
from .replay import divergence_figure
from .sweep import sweep_curves_figure, sweep_heatmap, sweep_probe_figure, sweep_table
from .timing import ratio_figure, shape_label, timing_figure, timing_rows
from .training import training_figure

__all__ = [
    # hidden state
    "hidden_heatmap",
    "norm_figure",
    "aligned_units_figure",
    "pca_figure",
    "pca_groups_figure",
    "gates_figure",
    # diagnostics, probes, timing, training
    "divergence_figure",
    "probe_figure",
    "timing_figure",
    "ratio_figure",
    "shape_label",
    "timing_rows",
    "training_figure",
    # sweeps (workbench.sweep's records)
    "sweep_table",
    "sweep_heatmap",
    "sweep_probe_figure",
    "sweep_curves_figure",
    # marks moved per interaction
    "set_time_cursor",
    "set_pca_cursor",
    "outline_units",
    "zoom_time",
    "TEMPLATE",
]
