"""Metadata inside exported files: written into each format's own slot, read back from any of them.

One JSON object (a provenance record) travels inside the file it describes:

- HTML: a ``<script type="application/json" id="workbench-metadata">`` block
  (:func:`html_metadata_script`), and, visible under the plot, a small footer saying
  which checkpoint and which rollout the figure came from (:func:`html_origin_footer`);
- JSON: a ``"metadata"`` field next to the figure;
- PNG: a ``tEXt`` chunk with keyword :data:`METADATA_ID`, before ``IEND``;
- SVG: a ``<metadata id="workbench-metadata">`` element after ``<svg ...>``;
- PDF: ``/WorkbenchMetadata`` in a new document information dictionary, appended
  as an incremental update; when the PDF's layout does not allow it (e.g.
  cross-reference streams), a ``<file>.metadata.json`` sidecar instead.

:func:`embed_in_image` writes the image formats' slots; :func:`read_metadata`
reads any format back. Nothing here renders a figure or imports plotly.

Examples:
    >>> import struct, zlib
    >>> chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
    ...                             + struct.pack(">I", zlib.crc32(kind + data)))
    >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", bytes(13)) + chunk(b"IEND", b"")
    >>> tagged, sidecar = embed_in_image("png", png, {"seed": 3})
    >>> sidecar is None, png_text(tagged)[METADATA_ID]
    (True, '{"seed": 3}')
"""

from __future__ import annotations

import binascii
import datetime as _dt
import html as _html
import json
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Mapping

from .provenance import origin_lines

__all__ = [
    "METADATA_ID",
    "SIDECAR_SUFFIX",
    "metadata_json",
    "html_metadata_script",
    "html_origin_footer",
    "FOOTER_ID",
    "embed_in_image",
    "png_text",
    "read_metadata",
]

METADATA_ID = "workbench-metadata"
"""HTML element id, PNG ``tEXt`` keyword and SVG ``<metadata>`` id of the embedded metadata."""
SIDECAR_SUFFIX = ".metadata.json"
"""appended to a PDF's file name for the sidecar written when the PDF cannot hold the metadata"""
FOOTER_ID = "workbench-origin"
"""HTML id of the visible provenance footer of an exported page"""
READABLE = ("html", "json", "png", "svg", "pdf")
"""the formats :func:`read_metadata` reads: every format :mod:`workbench.export` writes"""


def metadata_json(meta: Mapping[str, Any]) -> str:
    """The metadata as the ASCII JSON text every format embeds.

    Examples:
        >>> metadata_json({"env": "Café", "seed": 1})
        '{"env": "Caf\\\\u00e9", "seed": 1}'
    """
    return json.dumps(meta, ensure_ascii=True, sort_keys=False)


def html_metadata_script(meta: Mapping[str, Any]) -> str:
    """The ``<script type="application/json">`` block an HTML page carries (``<``, ``>``, ``&`` escaped).

    Examples:
        >>> html_metadata_script({"note": "</script>"})
        '<script type="application/json" id="workbench-metadata">{"note": "\\\\u003c/script\\\\u003e"}</script>'
    """
    payload = metadata_json(meta).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{METADATA_ID}">{payload}</script>'


def html_origin_footer(meta: Mapping[str, Any], *, width: int | None = None) -> str:
    """A small ``<footer>`` that says where a page's figure came from (:func:`~workbench.provenance.origin_lines`).

    Keyword Args:
        width: the plot's width in CSS pixels (the footer wraps at it); ``None``: the page's.

    Examples:
        >>> print(html_origin_footer({"checkpoint": None}))
        <footer id="workbench-origin" style="font:11px/1.4 sans-serif;color:#666;margin:4px 8px;max-width:100%"><div>Checkpoint: none (built in this session, not saved)</div></footer>
    """
    lines = "".join(f"<div>{_html.escape(line)}</div>" for line in origin_lines(meta))
    wide = "100%" if width is None else f"{int(width)}px"
    style = f"font:11px/1.4 sans-serif;color:#666;margin:4px 8px;max-width:{wide}"
    return f'<footer id="{FOOTER_ID}" style="{style}">{lines}</footer>'


def embed_in_image(fmt: str, data: bytes, meta: Mapping[str, Any], *, title: str = "") -> tuple[bytes, bytes | None]:
    """``data`` (a PNG, SVG or PDF) with ``meta`` inside: ``(bytes, sidecar bytes or None)``.

    Args:
        fmt: ``"png"``, ``"svg"`` or ``"pdf"``.
        data: the image as rendered.
        meta: the metadata (JSON-ready).

    Keyword Args:
        title: the PDF document title.

    Raises:
        ValueError: ``data`` is not a PNG (or SVG) as ``fmt`` says, or ``fmt`` is not an image format.
    """
    meta_json = metadata_json(meta)
    if fmt == "png":
        return _png_with_text(data, {METADATA_ID: meta_json, "Software": "GRU Workbench"}), None
    if fmt == "svg":
        return _svg_with_metadata(data, meta_json), None
    if fmt == "pdf":
        updated = _pdf_with_info(data, meta_json, title)
        if updated is None:
            return data, json.dumps(meta, indent=2).encode("utf-8")
        return updated, None
    raise ValueError(f"embed_in_image: expected 'png', 'svg' or 'pdf'; got {fmt!r}.")


# ---------------------------------------------------------------------------- PNG
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with_text(png: bytes, entries: Mapping[str, str]) -> bytes:
    """Inserts ``tEXt`` chunks before ``IEND``."""
    if not png.startswith(_PNG_MAGIC) or png[-8:-4] != b"IEND":
        raise ValueError("bytes that are not a PNG")
    chunks = b"".join(_png_chunk(b"tEXt", k.encode("latin-1") + b"\0" + v.encode("latin-1"))
                      for k, v in entries.items())
    return png[:-12] + chunks + png[-12:]


def png_text(png: bytes) -> dict[str, str]:
    """The ``tEXt`` entries of a PNG, ``{keyword: text}`` (see the module example)."""
    out, pos = {}, len(_PNG_MAGIC)
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        if kind == b"tEXt":
            key, _, value = png[pos + 8:pos + 8 + length].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
    return out


# ---------------------------------------------------------------------------- SVG
def _svg_with_metadata(svg: bytes, meta_json: str) -> bytes:
    text = svg.decode("utf-8")
    match = re.search(r"<svg\b[^>]*>", text)
    if match is None:
        raise ValueError("text that is not an SVG")
    block = f'<metadata id="{METADATA_ID}">{_html.escape(meta_json, quote=False)}</metadata>'
    return (text[:match.end()] + block + text[match.end():]).encode("utf-8")


# ---------------------------------------------------------------------------- PDF
def _pdf_string(text: str) -> bytes:
    """A PDF text string: literal if ASCII, else UTF-16BE hex with a BOM."""
    if text.isascii():
        esc = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        esc = esc.replace("\r", "\\r").replace("\n", "\\n")
        return b"(" + esc.encode("ascii") + b")"
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _pdf_with_info(pdf: bytes, meta_json: str, title: str) -> bytes | None:
    """Appends an incremental update with a new document information dictionary (None if not possible)."""
    tail = pdf[-4096:]
    starts = list(re.finditer(rb"startxref\s+(\d+)", tail))
    trailers = list(re.finditer(rb"trailer\s*<<(.*?)>>\s*startxref", pdf[-8192:], re.S))
    if not starts or not trailers:
        return None  # e.g. cross-reference streams: use a sidecar
    trailer = trailers[-1].group(1)
    size = re.search(rb"/Size\s+(\d+)", trailer)
    root = re.search(rb"/Root\s+(\d+\s+\d+\s+R)", trailer)
    if size is None or root is None:
        return None
    ident = re.search(rb"/ID\s*\[[^\]]*\]", trailer)
    producer = re.search(rb"/Producer\s*(\([^)]*\))", pdf[:4096])
    n = int(size.group(1))
    now = _dt.datetime.now(_dt.timezone.utc).strftime("D:%Y%m%d%H%M%SZ")
    info = (b"<< /Title " + _pdf_string(title) + b" /Creator (GRU Workbench)"
            + (b" /Producer " + producer.group(1) if producer else b"")
            + b" /ModDate (" + now.encode() + b") /WorkbenchMetadata <"
            + binascii.hexlify(meta_json.encode("ascii")) + b"> >>")
    body = pdf if pdf.endswith(b"\n") else pdf + b"\n"
    obj_offset = len(body)
    obj = b"%d 0 obj\n" % n + info + b"\nendobj\n"
    xref_offset = obj_offset + len(obj)
    xref = b"xref\n%d 1\n%010d 00000 n \n" % (n, obj_offset)
    new_trailer = (b"trailer\n<< /Size %d /Root " % (n + 1) + root.group(1) + b" /Info %d 0 R /Prev " % n
                   + starts[-1].group(1) + (b" " + ident.group(0) if ident else b"") + b" >>\n")
    return body + obj + xref + new_trailer + b"startxref\n%d\n%%%%EOF\n" % xref_offset


def _pdf_metadata(pdf: bytes) -> dict | None:
    found = list(re.finditer(rb"/WorkbenchMetadata\s*<([0-9A-Fa-f\s]*)>", pdf))
    return json.loads(binascii.unhexlify(re.sub(rb"\s", b"", found[-1].group(1)))) if found else None


# ---------------------------------------------------------------------------- reading back
def read_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata embedded in an exported file (HTML, JSON, PNG, SVG or PDF), or ``None``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     page = Path(tmp) / "fig.html"
        ...     _ = page.write_text(f"<html><head>{html_metadata_script({'seed': 7})}</head></html>")
        ...     read_metadata(page)
        {'seed': 7}
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    data = path.read_bytes()
    if fmt == "json":
        return json.loads(data).get("metadata")
    if fmt == "html":
        m = re.search(rf'<script type="application/json" id="{METADATA_ID}">(.*?)</script>'.encode(), data, re.S)
        return json.loads(m.group(1)) if m else None
    if fmt == "png":
        text = png_text(data).get(METADATA_ID)
        return json.loads(text) if text is not None else None
    if fmt == "svg":
        m = re.search(rf'<metadata id="{METADATA_ID}">(.*?)</metadata>'.encode(), data, re.S)
        return json.loads(_html.unescape(m.group(1).decode("utf-8"))) if m else None
    if fmt == "pdf":
        found = _pdf_metadata(data)
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if found is None and sidecar.is_file():
            return json.loads(sidecar.read_text())
        return found
    raise ValueError(f"cannot read metadata from {path}: unknown format {fmt!r}; expected one of {list(READABLE)}.")
