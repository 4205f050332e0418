"""Export: a figure of any panel, formats, folder and name → ``workbench.export.export_figure``.

Shows the paths written, or the error (an unwritable folder, a missing Chromium for PNG/SVG/PDF).
Figures come from the panels registered with :meth:`ExportPanel.add_source`; the metadata of the
last rollout (env, seed, module config, versions) goes into every file.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

import ipywidgets as w

from workbench.export import FORMATS, export_figure

from ._panel import Panel

__all__ = ["ExportPanel"]


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


class ExportPanel(Panel):
    """Writes the chosen figure; ``export()`` is the button, ``paths`` the files it wrote last."""

    def __init__(self, *, folder: str = "exports", formats: tuple[str, ...] = ("html",)):
        super().__init__(title="Export", css="wb-export")
        self.sources: dict[str, Panel] = {}
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
        self.export_button = w.Button(description="Export", button_style="primary", icon="download")
        self.written = w.HTML()
        self.buttons.append(self.export_button)
        self.export_button.on_click(lambda _: self.export())
        self.children = [
            self.header,
            w.HBox([self.figure, w.HBox(list(self.format_boxes.values()))]),
            w.HBox([self.folder, self.name, self.export_button]),
            self.status,
            self.written,
        ]
        self.show_message("No figure yet: build a policy and run a rollout.", "info")

    # ------------------------------------------------------------------ sources
    def add_source(self, name: str, panel: Panel) -> None:
        """Offers ``panel.figures`` under ``name`` (kept up to date through its ``"figures"`` event)."""
        self.sources[name] = panel
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

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Run metadata written into every exported file (the app passes the rollout's)."""
        self.metadata = dict(metadata)

    def formats(self) -> tuple[str, ...]:
        """The ticked formats."""
        return tuple(fmt for fmt, box in self.format_boxes.items() if box.value)

    # ------------------------------------------------------------------ action
    def export(self) -> list[Path]:
        """Writes the chosen figure in the ticked formats; shows and returns the paths."""
        with self.busy("Exporting…"):
            if not self.figure.value:
                raise RuntimeError("No figure to export yet: run a rollout (or a timing) first.")
            src, name = self.figure.value.split(":", 1)
            fig = self.sources[src].figures[name]
            formats = self.formats()
            if not formats:
                raise ValueError(f"Tick at least one format ({', '.join(f.upper() for f in FORMATS)}).")
            stem = self.name.value.strip() or name
            self.paths = []
            self.written.value = ""
            paths = export_figure(fig, Path(self.folder.value).expanduser(), formats, name=stem,
                                  metadata={**self.metadata, "panel": src})
            self.paths = paths
            items = "".join(f"<li><code>{html.escape(str(p.resolve()))}</code> ({_size(p)})</li>" for p in paths)
            self.written.value = f"<ul class='wb-written' style='margin:2px 0;font-size:13px'>{items}</ul>"
            self.show_message(f"Wrote {len(paths)} file(s).", "ok")
        return self.paths
