"""Figures that redraw in place in a notebook output: live curves for long work.

:class:`LiveFigure` shows a plotly figure once and replaces it on each
``update`` (an IPython display handle with plotly's own mimetype, so the
figure renders in JupyterLab and stays in the saved notebook).
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
        self._handle = None
        if show and _in_ipython():
            from IPython.display import display

            self._handle = display(_bundle(fig), raw=True, display_id=True)

    def update(self, fig) -> None:
        """Replaces the displayed figure with ``fig``."""
        self.figure = fig
        if self._handle is not None:
            self._handle.update(_bundle(fig), raw=True)


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
        self._draw = lambda: training_figure(self.history, target=target, title=title)
        super().__init__(self._draw(), show=show)

    def __call__(self, row: Mapping[str, Any]) -> None:
        self.history.append(dict(row))
        self.update(self._draw())
