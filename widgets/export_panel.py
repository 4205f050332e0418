"""Export: a figure of any panel, formats, folder, name and size → ``workbench.export.export_figure``;
*Export all* (every figure of the view), *Report* (a one-page HTML report of the run).

Shows what it wrote as download links (:func:`download_links_html`: they work in JupyterLab and in
``python -m workbench app``'s Voila; a file outside what the server serves is named, with its path),
or the error (an unwritable folder, a size out of range, a missing
Chromium for PNG/SVG/PDF). Figures come from the panels registered with
:meth:`ExportPanel.add_source`; the metadata of the last rollout (the checkpoint's path and sha256,
env, seed, sizes, device, versions) goes into every file. The exported figure shows the data, not
the UI: the time cursor and the selection boxes are left out unless *include cursor and selection*
is ticked. :meth:`ExportPanel.export` is the one entry point (the button, a notebook, a background job);
:meth:`ExportPanel.export_all` and :meth:`ExportPanel.report` are the other buttons'. Nothing is ever
overwritten: an export takes the next free name (``heat-1.html``), *Export all* a new folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Mapping
from urllib.parse import quote, unquote

import ipywidgets as w

from workbench.errors import Cancelled
from workbench.export import (DEFAULT_SCALE, FORMATS, STATIC_FORMATS, check_size, export_figure, figure_size,
                              image_server, prepare_folder)
from workbench.files import free_name

from ._panel import Panel

__all__ = ["ExportPanel", "download_href", "download_links_html", "server_root"]


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def server_root() -> tuple[Path | None, str | None]:
    """``(root, files URL)`` of the server this kernel belongs to, as far as the kernel can tell.

    - Voila (its kernels get ``VOILA_SERVER_URL`` and the page's path in ``SCRIPT_NAME``): the root is
      the notebook's folder (one notebook served) or above it (``/voila/render/<path>``), and files are
      at ``<server>voila/files/``.
    - A Jupyter server (Lab, Notebook): the root from its runtime file (``jpserver-PID.json``, the
      kernel's parent process); the files URL is ``None``: links are relative to the notebook, which
      Lab resolves to its ``files/`` URL.
    - Neither (a script, a test): ``(None, None)``.
    """
    env = os.environ
    if "VOILA_SERVER_URL" in env or "VOILA_BASE_URL" in env:
        server = env.get("VOILA_SERVER_URL") or env.get("VOILA_BASE_URL") or "/"
        root = Path.cwd().resolve()
        script = unquote(env.get("SCRIPT_NAME", ""))
        if "voila/render/" in script:  # a folder served: the page's path is the notebook's, from the root
            depth = len(PurePosixPath(script.split("voila/render/", 1)[1]).parent.parts)
            root = root.parents[depth - 1] if 0 < depth <= len(root.parents) else root
        return root, server.rstrip("/") + "/voila/files/"
    with contextlib.suppress(Exception):  # best effort: no jupyter_server, unreadable runtime files
        from jupyter_server.serverapp import list_running_servers

        for info in list_running_servers():
            if info.get("pid") == os.getppid() and info.get("root_dir"):
                return Path(info["root_dir"]).expanduser().resolve(), None
    return None, None


def download_href(path: str | os.PathLike, *, root: Path | None = None, files_url: str | None = None,
                  cwd: Path | None = None) -> str | None:
    """The link that downloads ``path`` from the page this kernel serves; ``None`` when it is outside the root.

    With a ``files_url`` (Voila), an absolute URL under it; else a URL relative to the notebook's folder
    (the kernel's ``cwd``), which Lab turns into its ``files/`` URL. ``root`` and ``files_url`` default to
    :func:`server_root`'s.

    Examples:
        >>> download_href("/srv/nb/exports/a b.html", root=Path("/srv"), cwd=Path("/srv/nb"))
        'exports/a%20b.html'
        >>> download_href("/srv/nb/exports/a.png", root=Path("/srv/nb"), files_url="/voila/files/", cwd=Path("/srv/nb"))
        '/voila/files/exports/a.png'
        >>> download_href("/tmp/a.png", root=Path("/srv"), cwd=Path("/srv/nb")) is None
        True
    """
    if root is None and files_url is None:
        root, files_url = server_root()
    path = Path(os.path.realpath(Path(path).expanduser()))
    cwd = Path(os.path.realpath(cwd if cwd is not None else Path.cwd()))
    if root is not None and (path != root and root not in path.parents):
        return None
    if files_url is not None:
        return files_url + quote(path.relative_to(root).as_posix())
    return quote(Path(os.path.relpath(path, cwd)).as_posix())


def download_links_html(paths: list[Path], *, root: Path | None = None, files_url: str | None = None,
                        cwd: Path | None = None) -> str:
    """The files as a list of download links (name and size), under the folder they are in; a file the
    server cannot serve (outside its root) is named with its path instead.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = Path(tmp) / "fig.html"; _ = p.write_text("x" * 2000)
        ...     text = download_links_html([p], root=Path(tmp), cwd=Path(tmp))
        >>> "<a href='fig.html' download='fig.html'" in text, "(2.0 kB)" in text
        (True, True)
    """
    if root is None and files_url is None:
        root, files_url = server_root()
    items = []
    for p in paths:
        href = download_href(p, root=root, files_url=files_url, cwd=cwd)
        size = f" ({_size(p)})" if p.is_file() else ""
        if href is None:
            items.append(f"<li><code>{html.escape(str(p.resolve()))}</code>{size}: outside the folder this "
                         "server shares, so there is no download link: open it from that path</li>")
        else:
            name = html.escape(p.name, quote=True)
            items.append(f"<li><a href='{html.escape(href, quote=True)}' download='{name}' "
                         f"title='{html.escape(str(p.resolve()), quote=True)}' target='_blank' "
                         f"rel='noopener'>{name}</a>{size}</li>")
    folders = sorted({str(p.resolve().parent) for p in paths})
    where = f"<div style='color:#555'>in <code>{html.escape(', '.join(folders))}</code></div>" if folders else ""
    return f"<div class='wb-written' style='font-size:13px'>{where}<ul style='margin:2px 0'>{''.join(items)}</ul></div>"


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _free_stem(folder: Path, stem: str, formats: tuple[str, ...]) -> str:
    """``stem``, or ``stem-1``, ``stem-2``... : the first under which no file of ``formats`` exists in ``folder``."""
    candidate, n = stem, 0
    while any(os.path.lexists(folder / f"{candidate}.{fmt}") for fmt in formats):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


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
        self.diagnostics = None
        """the last rollout's :class:`~workbench.diagnostics.DiagnosticsReport` (for *Report*)"""
        self.paths: list[Path] = []
        self.links_html = ""
        """the HTML of the download links shown last (``""`` when none)"""
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
        self.export_all_button = w.Button(description="Export all", icon="download", layout=w.Layout(width="auto"),
                                          tooltip="every figure of the view, in the ticked formats, into a new folder")
        self.report_button = w.Button(description="Report", icon="file", layout=w.Layout(width="auto"),
                                      tooltip="a one-page HTML report of the run: metadata, diagnostics, figures")
        self.written = w.Output()
        """the download links of the files written last (an HTML output: Lab resolves its relative links)"""
        self.buttons += [self.export_button, self.export_all_button, self.report_button]
        self.export_button.on_click(lambda _: self.start())
        self.export_all_button.on_click(lambda _: self.start_all())
        self.report_button.on_click(lambda _: self.start_report())
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
            w.HBox([self.export_all_button, self.report_button]),
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

    def set_metadata(self, metadata: Mapping[str, Any], *, diagnostics=None) -> None:
        """Run metadata written into every exported file (the app passes the rollout's: its ``checkpoint``
        says which file the policy came from, ``None`` when it was built in this session), and the run's
        diagnostics report (*Report* lists its findings; ``None``: not diagnosed)."""
        self.metadata = dict(metadata)
        self.diagnostics = diagnostics

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
            self._show_links([])

            def work(cancel, on_progress):
                free = _free_stem(folder, stem, formats)  # never overwrites: the next free name
                return export_figure(figure, folder, formats, name=free, metadata=metadata, width=width,
                                     height=height, scale=scale, include_marks=True, footer=footer,
                                     cancel=cancel, on_progress=on_progress)

            return self.start_job(work, name="export", on_end=self._ended("Export", stem), unit="formats",
                                  message=f"Exporting {name} as {', '.join(f.upper() for f in formats)}…")
        return None

    def _show_links(self, paths: list[Path]) -> None:
        self.paths = list(paths)
        self.links_html = download_links_html(self.paths) if self.paths else ""
        text = "\n".join(str(p) for p in self.paths)
        self.written.outputs = ({"output_type": "display_data", "metadata": {},
                                 "data": {"text/html": self.links_html, "text/plain": text}},) if self.paths else ()

    def _ended(self, what: str, stem: str | None = None):
        """The ``on_end`` of an export job: the links, and a line that says what was written or kept."""
        def on_end(job) -> None:
            if job.state == "cancelled":
                self._show_links(list(job.partial or []))
                kept = f"kept {len(self.paths)} file(s)" if self.paths else "nothing was written"
                self.show_message(f"{what} cancelled ({job.error}); {kept}.", "warning")
                return
            self._show_links(job.result if isinstance(job.result, list) else [job.result])
            renamed = ""
            if stem is not None and self.paths and not self.paths[0].name.startswith(f"{stem}."):
                renamed = f" ({stem} existed: nothing is overwritten, so the new name is {self.paths[0].stem})"
            self.show_message(f"Wrote {len(self.paths)} file(s){renamed}.", "ok")
        return on_end

    def _all_figures(self, *, rollout_only: bool = False) -> list[tuple[str, str, Any]]:
        """``(source, name, figure)`` of every figure the sources show now (only the run's: ``rollout_only``)."""
        return [(src, name, fig) for src, panel in self.sources.items()
                if not (rollout_only and src in self._not_from_rollout) for name, fig in panel.figures.items()]

    def start_all(self):
        """Starts *Export all*: every figure of every source, in the ticked formats, into a new folder
        ``<folder>/all-<date-time>`` (files ``<source>-<figure>.<format>``, each at its own size, HTML
        standalone); progress in files, *Cancel* between files (those written stay). Returns the job or
        ``None`` (the panel says why)."""
        from workbench.figures.marks import MARKS, without_marks

        if self.refuse_if_running():
            return None
        self.last_error = None
        with self.guard():
            found = self._all_figures()
            if not found:
                raise RuntimeError("No figure to export yet: run a rollout (or a timing) first.")
            formats = self.formats()
            if not formats:
                raise ValueError(f"Tick at least one format ({', '.join(f.upper() for f in FORMATS)}).")
            scale = self.scale.value
            check_size(None, None, scale)
            keep = tuple(MARKS) if self.include_marks.value else ()
            figures = [(src, name, without_marks(fig, keep=keep)) for src, name, fig in found]  # copies, taken now
            parent, footer = Path(self.folder.value).expanduser(), self.footer.value
            metadata = {src: {**({} if src in self._not_from_rollout else self.metadata), "panel": src}
                        for src in self.sources}
            self._show_links([])
            total = len(figures) * len(formats)

            def work(cancel, on_progress):
                prepare_folder(parent)
                folder = free_name(parent / f"all-{_stamp()}")
                folder.mkdir()  # new: nothing in it can be overwritten
                written: list[Path] = []
                many = sum(f in STATIC_FORMATS for f in formats) * len(figures) >= 2
                with image_server() if many else contextlib.nullcontext():
                    for i, (src, name, fig) in enumerate(figures):
                        done = i * len(formats)
                        try:
                            written += export_figure(
                                fig, folder, formats, name=f"{src}-{name}", metadata=metadata[src], scale=scale,
                                include_marks=True, footer=footer, cancel=cancel,
                                on_progress=lambda d, _t, done=done: on_progress(done + d, total))
                        except Cancelled:
                            raise Cancelled("export", done=done, total=total, unit="files", partial=written) from None
                return written

            return self.start_job(work, name="export of every figure", on_end=self._ended("Export all"),
                                  unit="files", message=f"Exporting {len(figures)} figure(s) as "
                                                        f"{', '.join(f.upper() for f in formats)}…")
        return None

    def start_report(self):
        """Starts *Report*: the run's one-page HTML report (:func:`workbench.report.write_report`: metadata,
        diagnostics findings, the rollout's and explorer's figures) as a new file
        ``<folder>/report-<env>-<date-time>.html``. Returns the job or ``None`` (the panel says why)."""
        from workbench.report import write_report

        if self.refuse_if_running():
            return None
        self.last_error = None
        with self.guard():
            if not self.metadata:
                raise RuntimeError("No run to report yet: build a policy and run a rollout first.")
            figures = {f"{src} · {name}": fig for src, name, fig in self._all_figures(rollout_only=True)}
            folder = Path(self.folder.value).expanduser()
            env = re.sub(r"[^A-Za-z0-9]+", "-", str(self.metadata.get("env_id") or "run")).strip("-").lower()
            metadata, diagnostics = dict(self.metadata), self.diagnostics
            self._show_links([])

            def work(cancel, on_progress):
                path = free_name(folder / f"report-{env}-{_stamp()}.html")
                return [write_report(path, metadata, diagnostics, figures, cancel=cancel, on_progress=on_progress)]

            return self.start_job(work, name="report", on_end=self._ended("Report"), unit="figures",
                                  message=f"Writing the report ({len(figures)} figure(s))…")
        return None

    def export(self) -> list[Path]:
        """Writes the chosen figure in the ticked formats; shows and returns the paths (``[]`` when nothing was
        written: the panel says why). The button's work, waited for: Ctrl-C or Kernel → Interrupt cancels it."""
        if self.start() is not None:
            self.wait()
        return self.paths

    def export_all(self) -> list[Path]:
        """*Export all*, waited for (:meth:`start_all`); returns the paths written."""
        if self.start_all() is not None:
            self.wait()
        return self.paths

    def report(self) -> Path | None:
        """*Report*, waited for (:meth:`start_report`); returns the report's path, or ``None``."""
        if self.start_report() is not None:
            self.wait()
        return self.paths[0] if self.paths else None
