"""Figures that redraw in place in a notebook output: live curves for long work.

:class:`LiveFigure` shows a plotly figure in an ``ipywidgets.Output`` and
replaces the Output's content on each ``update`` (the panels' recipe).
A plain display handle is not enough: JupyterLab stores an
``update_display_data`` but plotly's renderer does not redraw on it.
:class:`TrainingCurve` is a :func:`workbench.train.train` ``callback`` that
redraws :func:`workbench.figures.training_figure` after every batch:

    >>> from widgets.live import TrainingCurve                      # doctest: +SKIP
    >>> curve = TrainingCurve(target=475)                           # doctest: +SKIP
    >>> train(TrainConfig(), callback=curve)                        # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

from ._panel import _bundle

__all__ = ["LiveFigure", "TrainingCurve"]


def _in_ipython() -> bool:
    """True inside an IPython kernel or shell (outside one, ``display`` would print the raw bundle)."""
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.initialized()


class LiveFigure:
    """A plotly figure displayed once, redrawn in place by :meth:`update`.

    Outside IPython (a script) nothing is displayed; :attr:`figure` still follows.

    Examples:
        >>> import plotly.graph_objects as go
        >>> live = LiveFigure(go.Figure(), show=False)
        >>> live.update(go.Figure(go.Scatter(y=[1, 2])))
        >>> live.figure.data[0].y
        (1, 2)
    """

    def __init__(self, fig, *, show: bool = True):
        self.figure = fig
        """the figure drawn last"""
        self.output = None
        """the ``ipywidgets.Output`` that shows it (None when not shown)"""
        if show and _in_ipython():
            import ipywidgets as w
            from IPython.display import display

            self.output = w.Output()
            self._draw(fig)
            display(self.output)

    def _draw(self, fig) -> None:
        self.output.outputs = ({"output_type": "display_data", "data": _bundle(fig), "metadata": {}},)

    def update(self, fig) -> None:
        """Replaces the displayed figure with ``fig``."""
        self.figure = fig
        if self.output is not None:
            self._draw(fig)


class TrainingCurve(LiveFigure):
    """A live training curve: call it with each history row (a ``train`` callback).

    Keyword Args:
        target: a return to reach, drawn as a dashed line.
        title: the figure's title.
        show: display it now (``False``: only keep the history and figure).

    Examples:
        >>> curve = TrainingCurve(target=1.0, show=False)
        >>> curve({"frames": 576, "mean_return": 0.2}); curve({"frames": 1152, "mean_return": 0.6})
        >>> len(curve.history), curve.figure.data[1].y
        (2, (0.2, 0.4))
    """

    def __init__(self, *, target: float | None = None, title: str | None = None, show: bool = True):
        from workbench.figures import training_figure

        self.history: list[Mapping[str, Any]] = []
        """every row received so far"""
        self._make = lambda: training_figure(self.history, target=target, title=title)
        super().__init__(self._make(), show=show)

    def __call__(self, row: Mapping[str, Any]) -> None:
        self.history.append(dict(row))
        self.update(self._make())
