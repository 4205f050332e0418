"""Figures that redraw in place in a notebook output: live curves for long work.

:class:`LiveFigure` shows a plotly figure in an ``ipywidgets.Output`` and
replaces the Output's content on each ``update`` (the panels' recipe).
A plain display handle is not enough: JupyterLab stores an
``update_display_data`` but plotly's renderer does not redraw on it.
:class:`TrainingCurve` is a :func:`workbench.train.train` ``callback`` that
redraws :func:`workbench.figures.training_figure` after every batch.

When the cell that showed it ends (the work done, cancelled or failed), the live figure leaves a
static copy behind: its display is replaced by the last figure as a plain plotly output, and the
widget is closed. A saved notebook then holds the curve itself, which JupyterLab draws on reopening
(a widget's view would read "model not found" there: its kernel-side model is gone).

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
            self._handle = display(self.output, display_id=True)
            self._finish_when_the_cell_ends()

    _handle = None

    def _draw(self, fig) -> None:
        self.output.outputs = ({"output_type": "display_data", "data": _bundle(fig), "metadata": {}},)

    def update(self, fig) -> None:
        """Replaces the displayed figure with ``fig`` (after :meth:`finish`: the static copy)."""
        self.figure = fig
        if self.output is not None:
            self._draw(fig)
        elif self._handle is not None:
            self._handle.update(self._static(), raw=True)

    @property
    def live(self) -> bool:
        """Whether the figure is still a live widget (False once :meth:`finish` ran, or when not shown)."""
        return self.output is not None

    def _static(self) -> dict:
        return {**_bundle(self.figure), "text/plain": f"<{type(self).__name__}: {_title(self.figure)}>"}

    def finish(self) -> None:
        """Leaves the last figure behind as a static plotly output (saved with the notebook) in place of the
        live widget, and closes the widget. Runs by itself when the cell that showed the figure ends."""
        if self.output is None:
            return
        output, self.output = self.output, None
        self._handle.update(self._static(), raw=True)
        output.close()

    def _finish_when_the_cell_ends(self) -> None:
        """Registers :meth:`finish` to run once, after the current cell (IPython's ``post_run_cell``: also
        after an error or an interrupt)."""
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            return

        def ended(*_args) -> None:
            shell.events.unregister("post_run_cell", ended)
            self.finish()

        shell.events.register("post_run_cell", ended)


def _title(fig) -> str:
    title = fig.layout.title.text if fig.layout.title is not None else None
    return title or "figure"


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
