"""Export: a figure of any panel, formats, folder, name and size → ``workbench.export.export_figure``.

Shows the paths written, or the error (an unwritable folder, a size out of range, a missing
Chromium for PNG/SVG/PDF). Figures come from the panels registered with
:meth:`ExportPanel.add_source`; the metadata of the last rollout (the checkpoint's path and sha256,
env, seed, sizes, device, versions) goes into every file. The exported figure shows the data, not
the UI: the time cursor and the selection boxes are left out unless *include cursor and selection*
is ticked. :meth:`ExportPanel.export` is the one entry point (the button, a notebook, a background job).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

import ipywidgets as w

from workbench.export import DEFAULT_SCALE, FORMATS, check_size, export_figure, figure_size

from ._panel import Panel

__all__ = ["ExportPanel"]


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _listing(paths: list[Path]) -> str:
    items = "".join(f"<li><code>{html.escape(str(p.resolve()))}</code> ({_size(p)})</li>" for p in paths)
    return f"<ul class='wb-written' style='margin:2px 0;font-size:13px'>{items}</ul>"


class ExportPanel(Panel):
    """Writes the chosen figure; ``export()`` is the button, ``paths`` the files it wrote last.

    ``width`` and ``height`` (CSS pixels, every format) follow the chosen figure's own size
    until you change them; ``scale`` is the PNG's pixel density.
    """

    def __init__(self, *, folder: str = "exports", formats: tuple[str, ...] = ("html",)):
        super().__init__(title="Export", css="wb-export")
        self.sources: dict[str, Panel] = {}
        self._not_from_rollout: set[str] = set()
        self.metadata: dict[str, Any] = {}
        self.paths: list[Path] = []
        self.figure = w.Dropdown(options=[], description="figure", layout=w.Layout(width="360px"),
                                 style={"description_width": "60px"})
        self.format_boxes = {fmt: w.Checkbox(value=fmt in formats, description=fmt.upper(), indent=False,
                                             layout=w.Layout(width="70px")) for fmt in FORMATS}
        self.folder = w.Text(value=folder, description="folder", layout=w.Layout(width="360px"),
                             style={"description_width": "60px"})
        self.name = w.Text(value="", description="name", placeholder="default: the figure's name",
                           layout=w.Layout(width="300px"), style={"description_width": "50px"})
        small = dict(layout=w.Layout(width="150px"), style={"description_width": "50px"})
        self.width = w.IntText(value=1000, description="width", tooltip="CSS pixels, every format", **small)
        self.height = w.IntText(value=600, description="height", tooltip="CSS pixels, every format", **small)
        self.scale = w.FloatText(value=DEFAULT_SCALE, description="scale", step=0.5,
                                 tooltip="PNG pixel density: pixels = width·scale × height·scale", **small)
        self.size_note = w.HTML("<span style='color:#555;font-size:12px'>CSS px; scale: PNG pixel density</span>")
        self.include_marks = w.Checkbox(value=False, description="include cursor and selection", indent=False,
                                        layout=w.Layout(width="230px"))
        self.footer = w.Checkbox(value=True, description="provenance footer (HTML)", indent=False,
                                 layout=w.Layout(width="210px"))
        self.export_button = w.Button(description="Export", button_style="primary", icon="download")
        self.written = w.HTML()
        self.buttons.append(self.export_button)
        self.export_button.on_click(lambda _: self.start())
        self._size_follows_figure = True
        self._setting_size = False
        self.figure.observe(lambda _: self._follow_figure_size(), "value")
        for box in (self.width, self.height):
            box.observe(self._size_edited, "value")
        self.children = [
            self.header,
            w.HBox([self.figure, w.HBox(list(self.format_boxes.values()))]),
            w.HBox([self.width, self.height, self.scale, self.size_note]),
            w.HBox([self.include_marks, self.footer]),
            w.HBox([self.folder, self.name, self.export_button]),
            self.status,
            self.job_controls,
            self.written,
        ]
        self.show_message("No figure yet: build a policy and run a rollout.", "info")

    # ------------------------------------------------------------------ sources
    def add_source(self, name: str, panel: Panel, *, from_rollout: bool = True) -> None:
        """Offers ``panel.figures`` under ``name`` (kept up to date through its ``"figures"`` event).

        ``from_rollout=False``: the figures do not come from the rollout (e.g. a backend timing), so their
        files do not carry its metadata (checkpoint, env, seed), only the panel's name and the versions.
        """
        self.sources[name] = panel
        if not from_rollout:
            self._not_from_rollout.add(name)
        panel.on_figures(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """Re-reads the sources' figures into the figure choice (keeps the current choice when it is still there)."""
        options = [(f"{src} · {fig}", f"{src}:{fig}") for src, panel in self.sources.items() for fig in panel.figures]
        if options != list(self.figure.options):
            current = self.figure.value
            self.figure.options = options
            values = [v for _, v in options]
            if current in values:
                self.figure.value = current
            elif values:
                self.figure.value = values[0]
        if options and self.message.startswith("No figure yet"):
            self.clear_message()
        self._follow_figure_size()

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Run metadata written into every exported file (the app passes the rollout's: its ``checkpoint``
        says which file the policy came from, ``None`` when it was built in this session)."""
        self.metadata = dict(metadata)

    def formats(self) -> tuple[str, ...]:
        """The ticked formats."""
        return tuple(fmt for fmt, box in self.format_boxes.items() if box.value)

    def chosen_figure(self):
        """``(source name, figure name, figure)`` of the chosen figure, or ``None`` when there is none."""
        if not self.figure.value:
            return None
        src, name = self.figure.value.split(":", 1)
        panel = self.sources.get(src)
        fig = None if panel is None else panel.figures.get(name)
        return None if fig is None else (src, name, fig)

    # ------------------------------------------------------------------ size
    def _follow_figure_size(self) -> None:
        """Shows the chosen figure's own size, until the user types another."""
        chosen = self.chosen_figure()
        if not self._size_follows_figure or chosen is None:
            return
        self._setting_size = True
        try:
            self.width.value, self.height.value = figure_size(chosen[2])
        finally:
            self._setting_size = False

    def _size_edited(self, _change) -> None:
        if not self._setting_size:
            self._size_follows_figure = False

    # ------------------------------------------------------------------ action
    def start(self):
        """Starts the export in the background (the *Export* button); returns the
        :class:`~widgets.jobs.Job`, or ``None`` when nothing started (the panel says why).

        Everything is checked and the figure copied on the calling thread first, so later cursor
        moves do not change what is written; PNG/SVG/PDF start Chromium (seconds), so it runs with
        progress (formats done) and *Cancel* (checked between formats; files already written stay).
        """
        from workbench.figures.marks import MARKS, without_marks

        if self.refuse_if_running():
            return None
        self.last_error = None
        with self.guard():
            chosen = self.chosen_figure()
            if chosen is None:
                raise RuntimeError("No figure to export yet: run a rollout (or a timing) first.")
            src, name, fig = chosen
            formats = self.formats()
            if not formats:
                raise ValueError(f"Tick at least one format ({', '.join(f.upper() for f in FORMATS)}).")
            width, height, scale = self.width.value, self.height.value, self.scale.value
            check_size(width, height, scale)
            keep = tuple(MARKS) if self.include_marks.value else ()
            figure = without_marks(fig, keep=keep)  # a copy taken now: the job writes what is shown now
            folder, stem = Path(self.folder.value).expanduser(), self.name.value.strip() or name
            rollout = {} if src in self._not_from_rollout else self.metadata
            metadata, footer = {**rollout, "panel": src}, self.footer.value
            self.paths = []
            self.written.value = ""

            def work(cancel, on_progress):
                return export_figure(figure, folder, formats, name=stem, metadata=metadata, width=width,
                                     height=height, scale=scale, include_marks=True, footer=footer,
                                     cancel=cancel, on_progress=on_progress)

            def on_end(job) -> None:
                if job.state == "cancelled":
                    self.paths = list(job.partial or [])
                    self.written.value = _listing(self.paths) if self.paths else ""
                    kept = f"kept {len(self.paths)} file(s)" if self.paths else "nothing was written"
                    self.show_message(f"Export cancelled ({job.error}); {kept}.", "warning")
                    return
                self.paths = list(job.result)
                self.written.value = _listing(self.paths)
                self.show_message(f"Wrote {len(self.paths)} file(s).", "ok")

            return self.start_job(work, name="export", on_end=on_end, unit="formats",
                                  message=f"Exporting {name} as {', '.join(f.upper() for f in formats)}…")
        return None

    def export(self) -> list[Path]:
        """Writes the chosen figure in the ticked formats; shows and returns the paths (``[]`` when nothing was
        written: the panel says why). The button's work, waited for: Ctrl-C or Kernel → Interrupt cancels it."""
        if self.start() is not None:
            self.wait()
        return self.paths
