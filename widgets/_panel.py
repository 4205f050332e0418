"""The panel base: a ``VBox`` around one ``workbench`` call, with a message area, ``busy()`` and events.

Every panel of :mod:`widgets` derives from :class:`Panel`:

- ``panel.status`` (an ``HTML``) shows what happened: an info line while a
  callback runs, a result line, or an error (message plus a collapsed
  traceback). ``panel.message`` is the same text without markup, for tests.
- ``with panel.busy("Running…"):`` disables the panel's buttons, runs the
  block, shows any exception in the panel instead of raising it, and
  re-enables the buttons in ``finally``: a callback never fails silently and
  never leaves a dead button behind (the habit of ipywidgets' ``interactive.update``).
- ``panel.on(event, callback)`` / ``panel.emit(event, value)``: panels talk
  through events, not imports (ipyleaflet's ``on_click``). A listener that
  raises is reported in the emitting panel; the other listeners still run.
- ``panel.figures`` holds the current ``go.Figure`` of every view by name;
  ``panel.show_figure(name, fig)`` stores it and replaces the view's output
  with a static plotly figure (the recipe that works in Lab, Voila and
  headless); every change emits ``"figures"``.
- ``panel.mark_stale(text)`` shows a warning line under the title: the results shown belong to an
  earlier policy or environment; ``panel.clear_stale()`` removes it (the panel's next result does).
  ``panel.stale`` is the text, empty when the results are current.
- ``panel.start_job(work, ...)`` runs long work in the background (:mod:`widgets.jobs`): the
  panel's :class:`~widgets.jobs.JobControls` (``panel.job_controls``: bar, rate, time left, Cancel)
  show while it runs, the buttons are disabled, a second job is refused with a message, and
  ``on_end(job)`` shows the outcome; ``panel.wait()`` blocks until it ended (Ctrl-C cancels it).
"""

from __future__ import annotations

import contextlib
import html
import time
import traceback
from typing import Any, Callable, Iterator, Mapping, Sequence

import ipywidgets as w

__all__ = [
    "Panel", "SaveConflict", "box", "controls_for", "device_choice", "device_info_html", "device_note",
    "device_options", "figure_output", "html_table", "parse_numbers", "read_controls", "set_controls",
]

_STYLES = {
    "info": "background:#eef4fb;border-left:4px solid #4a86c5;",
    "ok": "background:#eef8ee;border-left:4px solid #3c9a3c;",
    "warning": "background:#fff7e6;border-left:4px solid #e0a020;",
    "error": "background:#fdeeee;border-left:4px solid #c83c3c;",
}
_BOX = "padding:4px 8px;margin:2px 0;font-size:13px;line-height:1.4;"


def box(text_html: str, kind: str = "info") -> str:
    """``text_html`` in a coloured message box (``kind``: info, ok, warning, error)."""
    return f'<div class="wb-msg wb-msg-{kind}" style="{_BOX}{_STYLES[kind]}">{text_html}</div>'


def figure_output(height: int | None = None, **layout: Any) -> w.Output:
    """An ``Output`` widget that holds one static figure (``min_height`` keeps the page from jumping)."""
    if height is not None:
        layout.setdefault("min_height", f"{height}px")
    return w.Output(layout=w.Layout(**layout))


def _bundle(fig) -> dict:
    import plotly.io as pio

    return pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())


def parse_numbers(text: str, kind: type = int, *, name: str = "value") -> tuple:
    """``"8, 16 32"`` → ``(8, 16, 32)``: comma- or space-separated numbers of one type.

    Examples:
        >>> parse_numbers("8, 16 32")
        (8, 16, 32)
        >>> parse_numbers("0.0, 0.05", float)
        (0.0, 0.05)
        >>> parse_numbers("8, x", name="batch")
        Traceback (most recent call last):
        ...
        ValueError: batch: expected int values separated by commas, e.g. '8, 16'; got '8, x'.
    """
    parts = [p for p in str(text).replace(",", " ").split() if p]
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        example = "8, 16" if kind is int else "0.0, 0.05"
        raise ValueError(
            f"{name}: expected {kind.__name__} values separated by commas, e.g. {example!r}; got {text!r}."
        ) from None


def controls_for(spec, fields: Sequence[str], *, style: Mapping[str, Any] | None = None,
                 layout: Mapping[str, Any] | None = None, bounded: bool = False) -> dict[str, w.Widget]:
    """One control per config field, built from its :class:`~workbench.specs.Setting` (label, kind, choices).

    ``spec`` is a config class (controls start at its defaults) or an instance (at its values). A field
    with choices becomes a ``Dropdown`` (labelled by ``choice_labels`` when it has them), or a
    ``SelectMultiple`` when it holds a tuple of choices; a bool a ``Checkbox``, an int an ``IntText``
    (with ``bounded=True`` and both bounds, a ``BoundedIntText`` that clamps to them), a float a
    ``FloatText``, a tuple of ints or floats a ``Text`` (``"32, 32"``; :func:`read_controls` parses it).
    The config checks the values when it is made, so a range lives in one place: the field. ``style``
    goes to every control, ``layout`` to all but the checkboxes.

    Examples:
        >>> from workbench.policy import PolicySpec
        >>> c = controls_for(PolicySpec(hidden_size=8), ["hidden_size", "activation", "head_cells"])
        >>> c["hidden_size"].description, c["hidden_size"].value, c["activation"].options, c["head_cells"].value
        ('hidden size', 8, ('elu', 'relu', 'tanh'), '32')
        >>> read_controls(PolicySpec, c)
        {'hidden_size': 8, 'activation': 'tanh', 'head_cells': (32,)}
    """
    from workbench.specs import settings

    known = settings(spec)
    style = dict(style or {})
    boxed = dict(style=style, **({"layout": w.Layout(**layout)} if layout else {}))
    controls: dict[str, w.Widget] = {}
    for name in fields:
        info = known[name]
        value = getattr(spec, name) if not isinstance(spec, type) else info.default
        label = info.label or name.replace("_", " ")
        options = list(info.choices or ())
        if info.choice_labels is not None:
            options = [(text, choice) for choice, text in info.choice_labels.items()]
        if info.choices is not None and isinstance(value, tuple):
            control = w.SelectMultiple(options=options, value=value, rows=len(options), description=label, **boxed)
        elif info.choices is not None or info.choice_labels is not None:
            control = w.Dropdown(options=options, value=value, description=label, **boxed)
        elif info.kind == "bool":
            control = w.Checkbox(value=value, description=label, style=style)
        elif info.kind == "int" and bounded and info.low is not None and info.high is not None:
            control = w.BoundedIntText(value=value, min=info.low, max=info.high, description=label, **boxed)
        elif info.kind == "int":
            control = w.IntText(value=value, description=label, **boxed)
        elif info.kind == "float":
            control = w.FloatText(value=value, description=label, **boxed)
        elif info.kind in ("ints", "floats"):
            control = w.Text(value=_numbers_text(value), description=label, **boxed)
        else:
            control = w.Text(value=str(value), description=label, **boxed)
        controls[name] = control
    return controls


def read_controls(spec_class: type, controls: Mapping[str, w.Widget]) -> dict[str, Any]:
    """The controls of :func:`controls_for` read as keyword arguments of ``spec_class`` (tuples parsed).

    Examples:
        >>> from workbench.timing import TimingConfig
        >>> c = controls_for(TimingConfig(reset_rate=(0, 0.05)), ["reset_rate", "passes"])
        >>> c["reset_rate"].value, c["passes"].options
        ('0, 0.05', ('forward', 'forward+backward'))
        >>> read_controls(TimingConfig, c)
        {'reset_rate': (0.0, 0.05), 'passes': ('forward', 'forward+backward')}
    """
    from workbench.specs import settings

    known = settings(spec_class)
    values = {}
    for name, control in controls.items():
        if known[name].kind in ("ints", "floats"):
            kind = int if known[name].kind == "ints" else float
            values[name] = parse_numbers(control.value, kind, name=control.description)
        else:
            values[name] = control.value
    return values


def set_controls(controls: Mapping[str, w.Widget], spec) -> None:
    """Sets the controls of :func:`controls_for` from a config instance."""
    for name, control in controls.items():
        value = getattr(spec, name)
        control.value = _numbers_text(value) if isinstance(control, w.Text) and isinstance(value, tuple) else value


def _numbers_text(values: Sequence[float]) -> str:
    """A tuple of numbers as a text control shows it: ``"32, 32"``, ``"0, 0.05"``."""
    return ", ".join(str(v) if isinstance(v, int) else f"{v:g}" for v in values)


class Panel(w.VBox):
    """A ``VBox`` with a title, a message area, ``busy()``, events and named figures.

    Subclasses put their controls and views in ``children`` (after
    ``self.header``; ``self.status`` goes where messages should appear),
    register their buttons in ``self.buttons`` and wrap every callback in
    ``with self.busy(...)``.

    Examples:
        >>> p = Panel(title="Demo")
        >>> seen = []
        >>> p.on("figures", seen.append)
        >>> p.emit("figures", {}); seen
        [{}]
        >>> with p.busy("working"):
        ...     raise ValueError("bad input")
        >>> p.message, type(p.last_error).__name__
        ('ValueError: bad input', 'ValueError')
    """

    EVENTS: tuple[str, ...] = ("figures",)
    """events this panel emits (``on`` rejects others)"""

    def __init__(self, *, title: str = "", css: str | None = None, **kwargs: Any):
        self.title = title
        self.header = w.HTML(f"<h3 style='margin:6px 0 2px 0'>{html.escape(title)}</h3>" if title else "")
        self.status = w.HTML("", layout=w.Layout(width="100%"))
        self.buttons: list[w.Widget] = []
        self.figures: dict[str, Any] = {}
        self.views: dict[str, w.Output] = {}
        self.last_error: BaseException | None = None
        self.message = ""
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {name: [] for name in self.EVENTS}
        self.job = None
        """the panel's last background job (:class:`widgets.jobs.Job`), ``None`` before the first"""
        self._job_controls = None
        self.stale = ""
        """the stale warning shown (:meth:`mark_stale`), empty when the results shown are current"""
        self._stale_note = w.HTML("", layout=w.Layout(width="100%", display="none"))
        self._stale_note.add_class("wb-stale")
        kwargs.setdefault("layout", w.Layout(border="1px solid #d0d7de", padding="4px 10px", margin="6px 0"))
        super().__init__(**kwargs)
        self.add_class("wb-panel")
        if css:
            self.add_class(css)

    # ------------------------------------------------------------------ messages
    def show_message(self, text: str, kind: str = "info", *, details_html: str = "") -> None:
        """Shows a plain-text message (escaped) and optional extra HTML below it."""
        self.message = text
        body = html.escape(text).replace("\n", "<br>")
        self.status.value = box(body + details_html, kind)

    def show_error(self, err: BaseException) -> None:
        """Shows an exception: its type and message, then the traceback, collapsed."""
        self.last_error = err
        tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        details = (
            "<details style='margin-top:4px'><summary style='cursor:pointer'>traceback</summary>"
            f"<pre style='font-size:11px;white-space:pre-wrap;margin:2px 0'>{html.escape(tb)}</pre></details>"
        )
        self.show_message(f"{type(err).__name__}: {err}", "error", details_html=details)

    def clear_message(self) -> None:
        self.message = ""
        self.status.value = ""

    @contextlib.contextmanager
    def busy(self, message: str = "Working…") -> Iterator[None]:
        """Disables the buttons, runs the block, shows an error instead of raising, re-enables.

        Only the buttons that were enabled are re-enabled; :meth:`refresh_controls`
        then runs, so state-dependent buttons (e.g. *Save* before a build) are right.
        """
        disabled = [b for b in self.buttons if not b.disabled]
        for b in disabled:
            b.disabled = True
        self.last_error = None
        self.show_message(message, "info")
        started = time.perf_counter()
        try:
            with self.guard():
                yield
        finally:
            for b in disabled:
                b.disabled = False
            self.refresh_controls()
            if self.last_error is None and self.message == message:
                self.show_message(f"Done in {time.perf_counter() - started:.1f} s.", "ok")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Shows an exception raised in the block in the panel instead of raising it (for quick
        updates such as a moving cursor, which should not toggle buttons or messages)."""
        try:
            yield
        except Exception as err:  # shown in the panel: a callback never fails silently
            self.show_error(err)

    def refresh_controls(self) -> None:
        """Sets state-dependent ``disabled`` flags; subclasses override (called after every ``busy``)."""

    # ------------------------------------------------------------------ stale results
    def mark_stale(self, text: str) -> None:
        """Shows ``text`` as a warning line under the panel's title: what it shows belongs to an earlier
        policy or environment. It stays until :meth:`clear_stale` (called when the next result is shown).

        Examples:
            >>> p = Panel(title="Demo")
            >>> p.mark_stale("From the previous policy: run again.")
            >>> p.stale, "wb-msg-warning" in p._stale_note.value, p._stale_note in p.children
            ('From the previous policy: run again.', True, True)
            >>> p.clear_stale(); p.stale, p._stale_note.layout.display
            ('', 'none')
        """
        self.stale = str(text)
        self._stale_note.value = box(f"<b>Stale:</b> {html.escape(self.stale)}", "warning")
        self._stale_note.layout.display = None
        if self._stale_note not in self.children:  # placed on first use: right under the title
            children = list(self.children)
            at = children.index(self.header) + 1 if self.header in children else 0
            self.children = tuple(children[:at] + [self._stale_note] + children[at:])

    def clear_stale(self) -> None:
        """Removes the :meth:`mark_stale` line (the results shown are current again)."""
        self.stale = ""
        self._stale_note.value = ""
        self._stale_note.layout.display = "none"

    # ------------------------------------------------------------------ background jobs
    @property
    def job_controls(self):
        """The panel's :class:`~widgets.jobs.JobControls` (built on first use, then reused; place it in
        ``children``)."""
        if self._job_controls is None:
            from .jobs import JobControls

            self._job_controls = JobControls()
        return self._job_controls

    @property
    def running(self) -> bool:
        """Whether the work of this panel's background job runs now (once it ended, a new job may start even
        while the panel still draws the last outcome: its buttons are back by then)."""
        return self.job is not None and self.job.running

    EXCLUSIVE_JOBS = False
    """whether this panel's jobs run alone (a timing: other work at the same time would distort it)"""

    def refuse_if_running(self) -> bool:
        """Says in the panel why a new job cannot start, and returns ``True``, when its own job still runs or
        when an exclusive job (a timing) runs anywhere, or, for an exclusive panel, any job runs (a second
        job is refused; the running one goes on)."""
        from .jobs import running_jobs

        if self.running:
            job = self.job
            self.show_message(f"A {job.name} is already running ({job.done:,} of "
                              f"{'?' if job.total is None else f'{job.total:,}'} done): wait for it to end or "
                              f"click Cancel, then start again.", "warning")
            return True
        others = running_jobs()
        blocking = others if self.EXCLUSIVE_JOBS else [job for job in others if job.exclusive]
        if not blocking:
            return False
        job = blocking[0]
        why = ("timings run alone: other work at the same time would distort them" if self.EXCLUSIVE_JOBS
               or job.exclusive else "")
        self.show_message(f"A {job.name} is running in another panel ({job.done:,} of "
                          f"{'?' if job.total is None else f'{job.total:,}'} done), and {why}: wait for it to "
                          f"end or cancel it there, then start again.", "warning")
        return True

    def start_job(self, work: Callable[..., Any], *, name: str, on_end: Callable[[Any], Any], unit: str = "steps",
                  message: str | None = None):
        """Runs ``work(cancel=, on_progress=)`` in the background; returns the :class:`~widgets.jobs.Job`,
        or ``None`` when one still runs (refused, with a message).

        The buttons are disabled and the job controls shown until it ends; then, on the kernel's main
        thread, ``on_end(job)`` shows a finished or cancelled job (a failed one shows its error without
        it; an error in ``on_end`` is shown too), the buttons come back and :meth:`refresh_controls` runs.
        """
        from .jobs import Job

        if self.refuse_if_running():
            return None
        controls = self.job_controls
        disabled = [b for b in self.buttons if not b.disabled]
        for b in disabled:
            b.disabled = True
        self.last_error = None
        self.show_message(message or f"Running the {name}…", "info")

        def ended(job) -> None:
            # the panel is usable again first (buttons back, controls hidden); then on_end shows the outcome,
            # which may take a while (a long trajectory drawn in the explorer)
            for b in disabled:
                b.disabled = False
            controls.finish()
            try:
                with self.guard():
                    if job.state == "failed":
                        self.show_error(job.error)
                    else:
                        on_end(job)
            finally:
                with self.guard():
                    self.refresh_controls()

        job = Job(work, name=name, on_progress=controls.update, on_end=ended, exclusive=self.EXCLUSIVE_JOBS)
        controls.attach(job, unit)
        self.job = job
        return job.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the panel's job ended (``True``; ``False`` after ``timeout`` s; ``True`` when there is
        none). Ctrl-C or Kernel → Interrupt while waiting cancels the job and is re-raised once it stopped."""
        return True if self.job is None else self.job.wait(timeout)

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancels the panel's running job (it stops at its next step and says what it kept)."""
        if self.running:
            self.job_controls.cancel(reason)

    # ------------------------------------------------------------------ events
    def on(self, event: str, callback: Callable[[Any], Any], remove: bool = False) -> None:
        """Registers (or with ``remove=True`` unregisters) ``callback(value)`` for ``event``."""
        if event not in self._listeners:
            raise ValueError(f"{type(self).__name__}: unknown event {event!r}; it emits {list(self.EVENTS)}.")
        listeners = self._listeners[event]
        if remove:
            if callback in listeners:
                listeners.remove(callback)
        elif callback not in listeners:
            listeners.append(callback)

    def emit(self, event: str, value: Any) -> None:
        """Calls every listener of ``event``; a failing listener is reported here, the others still run."""
        for callback in list(self._listeners[event]):
            try:
                callback(value)
            except Exception as err:
                if hasattr(err, "add_note"):  # Python >= 3.11
                    err.add_note(f"in a listener of {type(self).__name__}'s {event!r} event: {callback!r}")
                self.show_error(err)

    def on_figures(self, callback: Callable[[dict], Any], remove: bool = False) -> None:
        """``callback(panel.figures)`` whenever a figure of this panel changes."""
        self.on("figures", callback, remove)

    # ------------------------------------------------------------------ figures
    def add_view(self, name: str, height: int | None = None, **layout: Any) -> w.Output:
        """Creates the ``Output`` that shows figure ``name``; place it in ``children``."""
        out = figure_output(height, **layout)
        out.add_class(f"wb-view-{name.replace('_', '-')}")
        self.views[name] = out
        return out

    def show_figure(self, name: str, fig, *, emit: bool = True) -> None:
        """Stores ``fig`` as ``figures[name]`` and replaces its view's output with it (static plotly)."""
        self.figures[name] = fig
        out = self.views.get(name)
        if out is not None:
            out.outputs = ({"output_type": "display_data", "data": _bundle(fig), "metadata": {}},)
        if emit:
            self.emit("figures", self.figures)

    def drop_figure(self, name: str, *, emit: bool = True) -> None:
        """Removes figure ``name`` and empties its view."""
        self.figures.pop(name, None)
        if name in self.views:
            self.views[name].outputs = ()
        if emit:
            self.emit("figures", self.figures)


def device_options() -> list[tuple[str, str]]:
    """``(label, value)`` choices for a device control: ``auto``, ``cpu``, and ``cuda`` when torch sees a GPU."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        return [(f"auto → cuda ({name})", "auto"), ("cpu", "cpu"), (f"cuda ({name})", "cuda")]
    return [("auto → cpu", "auto"), ("cpu", "cpu")]


def device_choice(device: str) -> tuple[str, str]:
    """The device control's value for ``device``, and a warning when the panel cannot honour it.

    The library's rule (:func:`workbench.policy.resolve_device`): ``"auto"`` picks CUDA when present;
    ``"cuda"`` without CUDA is an error. A panel keeps working instead: it selects ``"cpu"`` and says
    why. An unknown choice raises :class:`~workbench.errors.ConfigError`, as in the library.

    Examples:
        >>> device_choice("cpu")
        ('cpu', '')
        >>> device_choice("tpu")
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'tpu'.
    """
    from workbench.errors import DeviceUnavailableError
    from workbench.policy import resolve_device

    try:
        resolved = resolve_device(device)
    except DeviceUnavailableError as err:
        return "cpu", f"{err} This panel runs on 'cpu' instead."
    return ("cuda" if resolved.type == "cuda" and device != "auto" else str(device)), ""


def device_info_html(warning: str) -> str:
    """What a panel shows under its device control: the :func:`device_choice` warning in a box, else
    :func:`device_note` in small print (empty when torch sees a GPU)."""
    if warning:
        return box(html.escape(warning), "warning")
    note = device_note()
    return f"<span style='font-size:12px;color:#666'>{html.escape(note)}</span>" if note else ""


def device_note() -> str:
    """One line on what CUDA torch sees (empty when it sees a GPU)."""
    import torch

    if torch.cuda.is_available():
        return ""
    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU build")
    return f"CUDA: not available here ({build}); everything runs on the CPU."


_CELL = "padding:1px 10px 1px 0;text-align:{align};border-bottom:1px solid #e5e5e5;font-weight:normal;"


def html_table(header: list[str], rows: list[list[str]], *, css: str = "", numeric_from: int = 1) -> str:
    """A compact HTML table; cells are HTML already (escape text first). Columns from ``numeric_from`` on
    are right-aligned.

    Examples:
        >>> html_table(["a", "b"], [["x", "1"]]).count("<td")
        2
    """
    def cell(tag: str, value: str, i: int) -> str:
        align = "right" if i >= numeric_from else "left"
        weight = "font-weight:bold;" if tag == "th" else ""
        return f"<{tag} style='{_CELL.format(align=align)}{weight}'>{value}</{tag}>"

    head = "<tr>" + "".join(cell("th", h, i) for i, h in enumerate(header)) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table class='{css}' style='border-collapse:collapse;margin:2px 0;font-size:13px'>{head}{body}</table>"


class SaveConflict:
    """The controls of a save that would replace a file, for a :class:`Panel` with a ``path`` field: an
    *overwrite* tick (the explicit confirm) and a *Save as NAME* button (a free name), both hidden until
    a save is refused. The panel calls :meth:`_conflict_controls` in ``__init__``, :meth:`_show_conflict`
    when it refuses, :meth:`_hide_conflict` after a save; the button saves again under the proposal
    through the panel's ``_save_again()``."""

    def _conflict_controls(self) -> None:
        self.overwrite = w.Checkbox(value=False, description="overwrite the existing file", indent=False,
                                    layout=w.Layout(display="none", width="220px"))
        self.save_as_button = w.Button(description="Save as proposed", icon="save",
                                       layout=w.Layout(display="none", width="auto"))
        self.proposed = None
        self.save_as_button.on_click(lambda _: self.save_as_proposed())

    def save_as_proposed(self):
        """Saves under the free name the last refused save proposed (``None`` when there is none)."""
        if self.proposed is None:
            return None
        self.path.value = str(self.proposed)
        return self._save_again()

    def _show_conflict(self, proposal, *, confirm: bool, text: str) -> None:
        """Shows why nothing was saved and proposes ``proposal``; ``confirm``: the overwrite tick too."""
        self.proposed = proposal
        self.save_as_button.description = f"Save as {proposal.name}"
        self.save_as_button.tooltip = str(proposal)
        self.save_as_button.layout.display = ""
        self.overwrite.value = False
        self.overwrite.layout.display = "" if confirm else "none"
        self.show_message(f"{text} Proposed: {proposal}", "warning")

    def _hide_conflict(self) -> None:
        """Forgets a confirm and a proposal (after a save, or when the path changes)."""
        self.proposed = None
        self.overwrite.value = False
        self.overwrite.layout.display = self.save_as_button.layout.display = "none"
