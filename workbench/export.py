"""Figures to files that open offline, with the run's metadata inside; returns the paths written.

Formats:

- ``html``: plotly.js embedded (``include_plotlyjs=True``, ~4.8 MB) or written
  once next to the pages (``"directory"``, for bundles); never a CDN. The
  metadata is a ``<script type="application/json" id="workbench-metadata">`` block.
- ``json``: the figure (``fig.to_json()``) plus a ``"metadata"`` field.
- ``png``, ``svg``, ``pdf``: through kaleido and the system Chromium
  (Debian package ``chromium``). The metadata goes into a PNG ``tEXt`` chunk
  (keyword ``workbench-metadata``), an SVG ``<metadata>`` element, and the PDF
  document information (``/WorkbenchMetadata``, appended as an incremental
  update; a ``.metadata.json`` sidecar if the PDF's layout does not allow it).

What a file shows and says:

- the data, not the UI: the time cursor and the selection boxes (the marks named
  in :data:`workbench.figures.marks.MARKS`) are left out of a copy of the figure
  unless ``include_marks`` asks for them; the figure passed in is never changed;
- its size: ``width`` × ``height`` CSS pixels in every format (the HTML page's
  plot, the JSON layout, the images), ``scale`` the PNG's pixel density;
- where it came from: the metadata (a rollout's record, laid over
  :func:`workbench.provenance.record`) with ``"checkpoint"`` (path and sha256, or
  a note such as "built in this session, not saved") and ``"rollout"`` (env,
  seed, sizes, device, time, versions) from :func:`workbench.provenance.origin`,
  and ``"exported"`` (when); an HTML page also shows it in a small footer.

Every file is written atomically: to a temporary file in the same directory,
then ``os.replace``; a failed export leaves no partial file and never damages
an earlier one. How the metadata sits inside each format, and reading it back
(:func:`~workbench.embedded_metadata.read_metadata`), is :mod:`workbench.embedded_metadata`.

Examples:
    >>> import tempfile, plotly.graph_objects as go
    >>> from workbench.embedded_metadata import read_metadata
    >>> fig = go.Figure(go.Scatter(y=[1, 3, 2]), layout=dict(title=dict(text="A line")))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> paths = export_figure(fig, tmp.name, ("html", "json"), metadata={"seed": 3})
    >>> [p.name for p in paths], read_metadata(paths[0])["seed"], read_metadata(paths[1])["figure"]
    (['a-line.html', 'a-line.json'], 3, 'a-line')
    >>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html as _html
import json
import math
import numbers
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio

from ._compat import kaleido_server
from .embedded_metadata import READABLE, SIDECAR_SUFFIX, embed_in_image, html_metadata_script, html_origin_footer
from .errors import Cancelled, ChromiumNotFoundError, ConfigError, ExportError, OutputPathError
from .figures.marks import MARKS, without_marks
from .files import atomic_write
from .jobs import CancelToken, Progress, check, report
from .provenance import complete, origin

__all__ = [
    "ExportError",
    "ChromiumNotFoundError",
    "FORMATS",
    "STATIC_FORMATS",
    "check_formats",
    "check_size",
    "figure_size",
    "export_metadata",
    "prepare_folder",
    "write_file",
    "find_chromium",
    "image_server",
    "export_figure",
    "export_figures",
    "load_figure",
]

FORMATS = READABLE
"""What :func:`export_figure` writes (each with its metadata inside, :mod:`workbench.embedded_metadata`)."""
STATIC_FORMATS = ("png", "svg", "pdf")
"""The formats rendered by kaleido in Chromium."""
PLOTLY_BUNDLE = "plotly.min.js"
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1000, 600
"""the size (CSS pixels) of a figure that sets none, in the images and the export panel"""
DEFAULT_SCALE = 2
"""the PNG's pixel density: a ``width`` × ``height`` figure is ``width·scale`` × ``height·scale`` pixels"""
SIZE_RANGE = (10, 8000)
"""the ``width`` and ``height`` an export accepts, CSS pixels (plotly draws nothing under 10)"""
SCALE_RANGE = (0.1, 8.0)
"""the ``scale`` an export accepts"""
MAX_PNG_SIDE = 16384
"""the largest PNG side, pixels, ``width·scale`` or ``height·scale`` (Chromium's canvas limit)"""


_NO_CHROMIUM = (
    "Static export to {formats} renders the figure in Chromium through kaleido, and no Chromium was "
    "found{detail}. Install the Debian package `chromium` (`apt-get install chromium`), or set "
    "BROWSER_PATH to a Chrome/Chromium executable. HTML and JSON export work without it."
)


# ---------------------------------------------------------------------------- files
def write_file(path: Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (:func:`workbench.files.atomic_write`); an :class:`ExportError` names the path."""
    try:
        return atomic_write(path, data, what="export")
    except OutputPathError as e:
        if e.errno is None:  # refused before writing: a device, FIFO, symlink loop
            raise ExportError(f"{e}; nothing was written.") from e
        raise ExportError(f"cannot write {path}: {e.strerror}; the previous file, if any, is unchanged.") from e
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}; the previous file, if any, is unchanged.") from e


def prepare_folder(directory: Path) -> Path:
    """Creates the export folder ``directory`` if needed; an :class:`ExportError` naming it when it cannot be written."""
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"cannot export into {directory}: it is a file, not a directory.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = next((p for p in [directory, *directory.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a directory" if blocker is not None else (e.strerror or str(e))
        raise ExportError(f"cannot create the export directory {directory}: {why}.") from e
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ExportError(f"cannot export into {directory}: the directory is not writable (read-only).")
    return directory


def _slug(text: str | None) -> str:
    text = re.sub(r"<[^>]+>", " ", text or "")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug[:60].strip("-")


def _title(fig: go.Figure) -> str | None:
    title = fig.layout.title
    return title.text if title is not None and title.text else None


# ---------------------------------------------------------------------------- size
def check_size(width=None, height=None, scale=None) -> None:
    """Raises :class:`ConfigError` naming ``width``, ``height`` or ``scale`` when it is out of range.

    ``None`` means "the figure's own" (see :func:`figure_size`) and passes.

    Examples:
        >>> check_size(800, 400, 2)
        >>> check_size(width=5)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: width must be a whole number of CSS pixels in [10, 8000]; got 5.
    """
    for arg, value in (("width", width), ("height", height)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or not SIZE_RANGE[0] <= value <= SIZE_RANGE[1]:
            raise ConfigError(f"{arg} must be a whole number of CSS pixels in [{SIZE_RANGE[0]}, {SIZE_RANGE[1]}]; "
                              f"got {value!r}.")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) \
                or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            raise ConfigError(f"scale (the PNG's pixel density) must be a number in [{SCALE_RANGE[0]}, "
                              f"{SCALE_RANGE[1]}]; got {scale!r}.")
        for arg, value in (("width", width), ("height", height)):
            if value is not None and value * scale > MAX_PNG_SIDE:
                raise ConfigError(f"{arg} × scale = {value} × {scale} = {value * scale:g} pixels, more than a PNG "
                                  f"side can be ({MAX_PNG_SIDE}); lower {arg} or scale.")


def figure_size(fig) -> tuple[int, int]:
    """The figure's own ``(width, height)`` in CSS pixels, else :data:`DEFAULT_WIDTH` × :data:`DEFAULT_HEIGHT`.

    Examples:
        >>> figure_size(go.Figure(layout=dict(height=300)))
        (1000, 300)
    """
    layout = fig.layout if hasattr(fig, "layout") else go.Layout(dict(fig).get("layout") or {})
    return int(layout.width or DEFAULT_WIDTH), int(layout.height or DEFAULT_HEIGHT)


# ---------------------------------------------------------------------------- renderers
def _render_html(fig: go.Figure, meta: Mapping[str, Any], stem: str, include_plotlyjs, *, footer: bool,
                 scale: float) -> bytes:
    image = {"filename": stem, "scale": scale}  # the page's camera button: the same pixel density
    page = pio.to_html(fig, include_plotlyjs=include_plotlyjs, full_html=True, div_id=f"workbench-{stem}",
                       config={"displaylogo": False, "toImageButtonOptions": image})
    version = _html.escape(str(meta.get("versions", {}).get("workbench")))
    head = (f"<title>{_html.escape(_title(fig) or stem)}</title>\n"
            f'<meta name="generator" content="GRU Workbench {version}">\n'
            f"{html_metadata_script(meta)}\n")
    index = page.find("</head>")
    page = page[:index] + head + page[index:] if index >= 0 else head + page
    if footer:
        foot = html_origin_footer(meta, width=fig.layout.width) + "\n"
        index = page.rfind("</body>")
        page = page[:index] + foot + page[index:] if index >= 0 else page + foot
    return page.encode("utf-8")


def _render_json(fig: go.Figure, meta: Mapping[str, Any]) -> bytes:
    data = json.loads(fig.to_json())
    data["metadata"] = meta
    return json.dumps(data).encode("utf-8")


def find_chromium() -> str | None:
    """The Chrome/Chromium executable kaleido will use, or ``None`` (``BROWSER_PATH`` wins when set).

    Examples:
        >>> find_chromium() is None or Path(find_chromium()).is_file()
        True
    """
    override = os.environ.get("BROWSER_PATH")
    if override:
        return override if Path(override).is_file() else None
    try:
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 best effort, fall back to PATH
        found = None
    if found and Path(found).is_file():
        return str(found)
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def _require_chromium(formats: Sequence[str]) -> None:
    if find_chromium() is None:
        override = os.environ.get("BROWSER_PATH")
        detail = f" (BROWSER_PATH={override!r} is not a file)" if override else ""
        raise ChromiumNotFoundError(_NO_CHROMIUM.format(formats="/".join(formats), detail=detail))


@contextlib.contextmanager
def image_server() -> Iterator[None]:
    """Keeps one kaleido/Chromium process for every static image rendered inside the block.

    The first image takes ~3 s (starting Chromium), later ones ~0.2 s. A server
    that was already running is reused and left running. MathJax is off (no
    CDN request).

    Examples:
        >>> with image_server():   # doctest: +SKIP
        ...     export_figure(fig_a, "out", "png"); export_figure(fig_b, "out", "png")
    """
    import kaleido

    _require_chromium(STATIC_FORMATS)
    server = kaleido_server()
    started = False
    if server is None or not server.is_running():
        kaleido.start_sync_server(mathjax=False, silence_warnings=True)
        started = True
    try:
        yield
    finally:
        if started:
            kaleido.stop_sync_server(silence_warnings=True)


def _render_static(fig: go.Figure, fmt: str, *, scale: float) -> bytes:
    """``fig`` as ``fmt`` at its layout size (else the default); ``scale`` applies to PNG only."""
    import kaleido

    spec = fig.to_dict()
    width, height = figure_size(fig)
    opts = dict(format=fmt, width=width, height=height, scale=scale if fmt == "png" else 1)
    server = kaleido_server()
    kopts = {} if server is not None and server.is_running() else {"mathjax": False}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            return kaleido.calc_fig_sync(spec, opts=opts, kopts=kopts)
    except Exception as e:
        if "chrom" in type(e).__name__.lower() or "chrome" in str(e).lower():
            raise ChromiumNotFoundError(_NO_CHROMIUM.format(formats=fmt, detail=f" ({e})")) from e
        raise


# ---------------------------------------------------------------------------- export
def check_formats(formats, default: tuple[str, ...]) -> tuple[str, ...]:
    """``formats`` (one name or several, any case, ``None`` for ``default``) as a tuple of known formats."""
    if formats is None:
        return default
    items = [formats] if isinstance(formats, str) else list(formats)
    out = []
    for f in items:
        f = str(f).lower().lstrip(".")
        if f not in FORMATS:
            raise ConfigError(f"unknown export format {f!r}; expected some of {list(FORMATS)}.")
        if f not in out:
            out.append(f)
    if not out:
        raise ConfigError(f"no export format given; expected some of {list(FORMATS)}.")
    return tuple(out)


def _check_plotlyjs(include_plotlyjs) -> None:
    if include_plotlyjs is not True and include_plotlyjs != "directory":
        raise ValueError(
            f"include_plotlyjs must be True (embedded) or 'directory' (one {PLOTLY_BUNDLE} beside the pages) "
            f"so that the HTML opens offline; got {include_plotlyjs!r}."
        )


def _write_bundle(directory: Path) -> Path:
    """Writes plotly.js beside the pages (once: an identical file is left alone)."""
    from plotly.offline import get_plotlyjs

    path = directory / PLOTLY_BUNDLE
    data = get_plotlyjs().encode("utf-8")
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path
    return write_file(path, data)


def _render(fig: go.Figure, fmts: Sequence[str], *, stem: str, meta: Mapping[str, Any], include_plotlyjs,
            footer: bool, scale: float, cancel: CancelToken | None,
            on_progress: Progress | None) -> dict[str, tuple[bytes, bytes | None]]:
    """Every format's bytes (and a sidecar's, if any), before anything is written; checks ``cancel`` between."""
    out: dict[str, tuple[bytes, bytes | None]] = {}
    for i, fmt in enumerate(fmts):
        check(cancel, f"export of {stem!r}", done=i, total=len(fmts), unit="formats", partial=[])
        sidecar = None
        if fmt == "html":
            data = _render_html(fig, meta, stem, include_plotlyjs, footer=footer, scale=scale)
        elif fmt == "json":
            data = _render_json(fig, meta)
        else:
            data = _render_static(fig, fmt, scale=scale)
            try:
                data, sidecar = embed_in_image(fmt, data, meta, title=_title(fig) or stem)
            except ValueError as e:
                raise ExportError(f"kaleido returned {e}.") from None
        out[fmt] = (data, sidecar)
        report(on_progress, i + 1, len(fmts))
    return out


def export_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an exported file embeds: ``metadata`` over a fresh record, with its origin and the export time.

    ``"checkpoint"`` and ``"rollout"`` come from :func:`workbench.provenance.origin`; the other
    entries of ``metadata`` (e.g. a rollout's ``seed``, ``steps``, ``created``) stay as they are.

    Examples:
        >>> meta = export_metadata({"checkpoint": None, "seed": 3, "steps": 50, "num_envs": 2})
        >>> meta["checkpoint"]["note"], meta["rollout"]["seed"], meta["seed"], "exported" in meta
        ('built in this session, not saved', 3, 3, True)
    """
    meta = complete(metadata)
    meta.update(origin(metadata))
    meta["exported"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return meta


def _keep(include_marks) -> tuple[str, ...]:
    if include_marks is True:
        return MARKS
    if include_marks is False or include_marks is None:
        return ()
    keep = (include_marks,) if isinstance(include_marks, str) else tuple(include_marks)
    if any(k not in MARKS for k in keep):
        raise ConfigError(f"include_marks must be True, False or some of {list(MARKS)}; got {include_marks!r}.")
    return keep


def export_figure(
    fig: go.Figure,
    path_or_dir: str | os.PathLike,
    formats: str | Sequence[str] | None = None,
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    include_plotlyjs: bool | str = True,
    width: int | None = None,
    height: int | None = None,
    scale: float = DEFAULT_SCALE,
    include_marks: bool | Sequence[str] = False,
    footer: bool = True,
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
) -> list[Path]:
    """Writes one figure in one or more formats, with the run metadata embedded.

    Args:
        fig: a plotly figure (``go.Figure``, ``FigureWidget`` or a figure dict).
        path_or_dir: a directory (files are ``<dir>/<name>.<format>``) or a
            file path whose suffix is a format (``"out/pca.png"``).
        formats: some of :data:`FORMATS`; default: the path's suffix, else ``("html",)``.

    Keyword Args:
        name: the file stem (default: the path's stem, or the figure title as a slug, or ``"figure"``).
        metadata: run metadata (env, seed, module config, a trajectory's
            metadata...), laid over :func:`workbench.provenance.record` (a ``versions``
            dict is merged into the collected one).
        include_plotlyjs: ``True`` embeds plotly.js; ``"directory"`` writes
            ``plotly.min.js`` beside the page (returned last). Never a CDN.
        width, height: the size in CSS pixels in every format (in :data:`SIZE_RANGE`; default: the
            figure's own; else the images are 1000 × 600 and the HTML plot fills the page's width).
        scale: the PNG's pixel density (in :data:`SCALE_RANGE`): its pixels are ``width·scale`` ×
            ``height·scale``; SVG and PDF are vector images of ``width`` × ``height``.
        include_marks: ``True`` keeps the time cursor and the selection boxes (:data:`MARKS`),
            or some of their names; default: a copy of the figure without them.
        footer: an HTML page shows where it came from (checkpoint, rollout, versions) under the
            plot; the metadata is embedded in every format either way.
        cancel: a :class:`~workbench.jobs.CancelToken` checked before each format is rendered;
            on cancel nothing of this figure is written (``Cancelled.partial == []``).
        on_progress: ``on_progress(formats rendered, formats)`` after each format.

    Returns:
        The paths written, in the order of ``formats``.

    Raises:
        ConfigError: ``width``, ``height``, ``scale`` or ``include_marks`` out of range (named).
        ExportError: a path cannot be written (the message names it).
        ChromiumNotFoundError: a static format without Chromium.
        Cancelled: ``cancel`` was set.

    Examples:
        >>> import tempfile, plotly.graph_objects as go
        >>> tmp = tempfile.TemporaryDirectory()
        >>> out = Path(tmp.name) / "figs"                       # created on demand
        >>> paths = export_figure(go.Figure(), out / "empty.json")
        >>> [p.relative_to(out).as_posix() for p in paths]
        ['empty.json']
        >>> tmp.cleanup()
    """
    _check_plotlyjs(include_plotlyjs)
    scale = DEFAULT_SCALE if scale is None else scale
    check_size(width, height, scale)
    fig = without_marks(fig, keep=_keep(include_marks))  # a copy: the caller's figure is never changed
    fig.update_layout({k: v for k, v in (("width", width), ("height", height)) if v is not None})  # None: as it was
    target = Path(path_or_dir).expanduser()
    suffix = target.suffix.lower().lstrip(".")
    if suffix in FORMATS and not target.is_dir():
        directory, stem, fmts = target.parent, name or target.stem, check_formats(formats, (suffix,))
    else:
        directory, stem, fmts = target, name or _slug(_title(fig)) or "figure", check_formats(formats, ("html",))
    if not stem or "/" in stem or "\\" in stem or stem in (".", ".."):
        raise ValueError(f"name must be a plain file stem, got {stem!r}.")
    meta = export_metadata(metadata)
    meta.setdefault("figure", stem)
    prepare_folder(directory)
    paths = {fmt: directory / f"{stem}.{fmt}" for fmt in fmts}
    for path in paths.values():
        if path.is_dir():
            raise ExportError(f"cannot write {path}: a directory is in the way.")
    static = [f for f in fmts if f in STATIC_FORMATS]
    if static:
        _require_chromium(static)
    rendered = _render(fig, fmts, stem=stem, meta=meta, include_plotlyjs=include_plotlyjs, footer=footer,
                       scale=scale, cancel=cancel, on_progress=on_progress)
    written = []
    for fmt, (data, sidecar) in rendered.items():
        written.append(write_file(paths[fmt], data))
        if sidecar is not None:
            written.append(write_file(paths[fmt].with_name(paths[fmt].name + SIDECAR_SUFFIX), sidecar))
    if "html" in fmts and include_plotlyjs == "directory":
        written.append(_write_bundle(directory))
    return written


def export_figures(
    figures: Mapping[str, go.Figure],
    out_dir: str | os.PathLike,
    formats: str | Sequence[str] = ("html",),
    *,
    metadata: Mapping[str, Any] | None = None,
    include_plotlyjs: bool | str = "directory",
    width: int | None = None,
    height: int | None = None,
    scale: float = DEFAULT_SCALE,
    include_marks: bool | Sequence[str] = False,
    footer: bool = True,
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
) -> list[Path]:
    """Writes several figures into one directory; ``plotly.min.js`` once for the HTML pages.

    Static images share one Chromium (:func:`image_server`) when there are
    two or more. Each file records ``"figure": <name>`` in its metadata.

    Args:
        figures: ``{name: figure}``; names become file stems.
        out_dir: the directory (created if needed).
        formats: as :func:`export_figure`.

    Keyword Args:
        metadata: run metadata shared by every file.
        include_plotlyjs: ``"directory"`` (default: one shared bundle) or ``True`` (each page standalone).
        width, height, scale, include_marks, footer: as :func:`export_figure`.
        cancel: checked before each format of each figure; on cancel the figures already written
            stay, and ``Cancelled.partial`` lists their paths (a figure is written whole or not at all).
        on_progress: ``on_progress(formats rendered, figures × formats)``.

    Returns:
        Every path written, figure by figure, then ``plotly.min.js`` if written.

    Examples:
        >>> import tempfile, plotly.graph_objects as go
        >>> tmp = tempfile.TemporaryDirectory()
        >>> paths = export_figures({"a": go.Figure(), "b": go.Figure()}, tmp.name)
        >>> [p.name for p in paths]
        ['a.html', 'b.html', 'plotly.min.js']
        >>> tmp.cleanup()
    """
    _check_plotlyjs(include_plotlyjs)
    check_size(width, height, scale)
    _keep(include_marks)
    fmts = check_formats(formats, ("html",))
    directory = prepare_folder(Path(out_dir).expanduser())
    shared = export_metadata(metadata)
    static = [f for f in fmts if f in STATIC_FORMATS]
    if static:
        _require_chromium(static)
    many_images = len(static) * len(figures) >= 2
    written: list[Path] = []
    total = len(figures) * len(fmts)

    def ordered(paths: list[Path]) -> list[Path]:
        bundle = [p for p in paths if p.name == PLOTLY_BUNDLE]
        return [p for p in paths if p.name != PLOTLY_BUNDLE] + bundle[:1]

    with image_server() if many_images else contextlib.nullcontext():
        for i, (name, fig) in enumerate(figures.items()):
            check(cancel, "export", done=i, total=len(figures), unit="figures", partial=ordered(written))
            done = i * len(fmts)
            try:
                written += export_figure(
                    fig, directory, fmts, name=name, metadata={**shared, "figure": name},
                    include_plotlyjs=True if include_plotlyjs is True else "directory", width=width,
                    height=height, scale=scale, include_marks=include_marks, footer=footer, cancel=cancel,
                    on_progress=None if on_progress is None else lambda d, _t: on_progress(done + d, total))
            except Cancelled:
                raise Cancelled("export", done=i, total=len(figures), unit="figures",
                                partial=ordered(written)) from None
    return ordered(written)


def load_figure(path: str | os.PathLike) -> tuple[go.Figure, dict[str, Any] | None]:
    """A figure and its metadata back from an exported ``.json`` file.

    Examples:
        >>> import tempfile, plotly.graph_objects as go
        >>> fig = go.Figure(go.Bar(y=[1, 2]), layout=dict(title=dict(text="bars")))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> back, meta = load_figure(export_figure(fig, tmp.name, "json")[0])
        >>> list(back.data[0].y), back.layout.title.text, meta["figure"]
        ([1, 2], 'bars', 'bars')
        >>> tmp.cleanup()
    """
    data = json.loads(Path(path).read_text())
    meta = data.pop("metadata", None)
    return go.Figure(data), meta
