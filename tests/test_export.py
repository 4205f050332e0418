"""workbench.export: files that open offline, embedded metadata, atomic writes, clear path errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import plotly.graph_objects as go
import pytest

import workbench.files
import torch
from plotly.offline import get_plotlyjs

from workbench import export as X
from workbench.embedded_metadata import read_metadata
from workbench import provenance

needs_chromium = pytest.mark.skipif(X.find_chromium() is None,
                                    reason="static export needs Chromium (Debian package `chromium`)")


@pytest.fixture
def fig():
    return go.Figure(go.Scatter(x=[0, 1, 2], y=[3.0, 1.0, 2.0], name="line"),
                     layout=dict(title=dict(text="Hidden-state norm, env 0"), width=400, height=300))


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class TestHTML:
    def test_self_contained_offline_page(self, fig, tmp_path):
        """Default HTML embeds plotly.js (no remote script) and carries the metadata block and a title."""
        (path,) = X.export_figure(fig, tmp_path, metadata={"seed": 5, "env": "CartPole-v1"})
        assert path == tmp_path / "hidden-state-norm-env-0.html"
        page = path.read_text(encoding="utf-8")
        bundle = get_plotlyjs()
        assert bundle in page
        assert not re.search(r"<script[^>]*\bsrc=", page)
        assert "cdn.plot.ly" not in page.replace(bundle, "")  # the bundle only names it as a geo default
        block = re.search(r'<script type="application/json" id="workbench-metadata">(.*?)</script>', page, re.S)
        meta = json.loads(block.group(1))
        assert meta["seed"] == 5 and meta["env"] == "CartPole-v1" and meta["figure"] == path.stem
        assert meta["versions"]["torch"] == torch.__version__ and "torchrl" in meta["versions"]
        assert "<title>Hidden-state norm, env 0</title>" in page
        assert read_metadata(path) == meta

    def test_bundle_writes_plotlyjs_once(self, fig, tmp_path):
        """export_figures with 'directory': small pages that load one local plotly.min.js."""
        paths = X.export_figures({"a": fig, "b": go.Figure(fig)}, tmp_path / "bundle", ("html", "json"),
                                 metadata={"seed": 1})
        out = tmp_path / "bundle"
        assert [p.relative_to(out).as_posix() for p in paths] == ["a.html", "a.json", "b.html", "b.json",
                                                                  "plotly.min.js"]
        assert (out / "plotly.min.js").read_text(encoding="utf-8") == get_plotlyjs()
        page = (out / "a.html").read_text(encoding="utf-8")
        assert '<script charset="utf-8" src="plotly.min.js"></script>' in page and "cdn.plot.ly" not in page
        assert len(page) < 100_000
        assert read_metadata(out / "b.html")["figure"] == "b"
        assert listing(out) == ["a.html", "a.json", "b.html", "b.json", "plotly.min.js"]

    def test_never_a_cdn(self, fig, tmp_path):
        """include_plotlyjs='cdn' (or False) is refused: the page would be blank offline."""
        for bad in ("cdn", False, "https://example.org/plotly.js"):
            with pytest.raises(ValueError, match="opens offline"):
                X.export_figure(fig, tmp_path, include_plotlyjs=bad)
        assert listing(tmp_path) == []


class TestJSON:
    def test_round_trip(self, fig, tmp_path):
        """JSON holds the figure plus a metadata field, and loads back to the same figure."""
        (path,) = X.export_figure(fig, tmp_path / "norm.json", metadata={"module": torch.nn.GRU(3, 4)})
        data = json.loads(path.read_text())
        assert set(data) == {"data", "layout", "metadata"}
        back, meta = X.load_figure(path)
        assert back.to_plotly_json() == fig.to_plotly_json()
        assert meta["module"]["hidden_size"] == 4 and meta["module"]["class"] == "GRU"


class TestMetadata:
    def test_collect_metadata(self):
        """Versions of torch/torchrl/tensordict/workbench, a time stamp and JSON-ready extras."""
        from workbench import GRUModule, __version__

        module = GRUModule(4, 8, in_key="observation", out_key="features")
        meta = provenance.record(seed=0, module=module, is_init=torch.zeros(100, dtype=torch.bool),
                                 small=torch.tensor([1, 2]), path=Path("/x"), dtype=torch.float32)
        assert meta["versions"]["workbench"] == __version__
        assert {"torch", "torchrl", "tensordict", "plotly", "kaleido", "python"} <= set(meta["versions"])
        assert meta["module"]["class"] == "GRUModule" and meta["module"]["hidden_size"] == 8
        assert meta["module"]["input_size"] == 4 and meta["module"]["in_keys"][0] == "observation"
        assert meta["is_init"]["shape"] == [100] and len(meta["is_init"]["sha256"]) == 64
        assert meta["small"] == [1, 2] and meta["path"] == "/x" and meta["dtype"] == "torch.float32"
        json.dumps(meta)  # all JSON-ready

    def test_given_versions_are_merged(self, fig, tmp_path):
        """A trajectory's metadata (with its own versions) is laid over the collected one."""
        (path,) = X.export_figure(fig, tmp_path / "f.json", metadata={"versions": {"torch": "9.9"}, "steps": 80})
        meta = read_metadata(path)
        assert meta["versions"]["torch"] == "9.9" and meta["versions"]["plotly"] and meta["steps"] == 80
        assert meta["created"] and meta["figure"] == "f"


class TestAtomicWrites:
    def test_failed_write_keeps_the_earlier_file(self, fig, tmp_path, monkeypatch):
        """A write that fails half-way leaves the earlier file byte-identical and no temporary file."""
        (path,) = X.export_figure(fig, tmp_path / "fig.json")
        before = path.read_bytes()
        written = []

        def half_then_fail(fh, data):
            fh.write(data[: len(data) // 2])
            written.append(len(data) // 2)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(workbench.files, "_write_bytes", half_then_fail)
        fig.update_layout(title_text="changed")
        with pytest.raises(X.ExportError, match=r"cannot write .*fig\.json: No space left on device"):
            X.export_figure(fig, tmp_path / "fig.json")
        assert written and path.read_bytes() == before
        assert listing(tmp_path) == ["fig.json"]

    def test_failed_render_writes_nothing(self, fig, tmp_path, monkeypatch):
        """If any format fails to render, no file of that export is written."""
        def boom(*args, **kwargs):
            raise RuntimeError("render failed")

        monkeypatch.setattr(X, "_render_json", boom)
        with pytest.raises(RuntimeError, match="render failed"):
            X.export_figure(fig, tmp_path, ("html", "json"), name="f")
        assert listing(tmp_path) == []

    def test_interrupted_write_cleans_up(self, fig, tmp_path, monkeypatch):
        """Even a KeyboardInterrupt mid-write removes the temporary file."""
        def interrupt(fh, data):
            fh.write(data[:10])
            raise KeyboardInterrupt

        monkeypatch.setattr(workbench.files, "_write_bytes", interrupt)
        with pytest.raises(KeyboardInterrupt):
            X.export_figure(fig, tmp_path / "x.json")
        assert listing(tmp_path) == []


class TestPaths:
    def test_file_where_a_directory_is_expected(self, fig, tmp_path):
        """A parent that is a file: the error names the path and says why."""
        blocker = tmp_path / "notadir"
        blocker.write_text("x")
        with pytest.raises(X.ExportError, match=rf"{re.escape(str(blocker / 'sub'))}: .*notadir is a file"):
            X.export_figure(fig, blocker / "sub")
        with pytest.raises(X.ExportError, match=rf"cannot export into {re.escape(str(blocker))}: it is a file"):
            X.export_figures({"a": fig}, blocker)

    def test_directory_that_cannot_be_created(self, fig):
        """/proc does not take new directories: a clear error naming the directory."""
        with pytest.raises(X.ExportError, match=r"cannot create the export directory /proc/workbench-export-test"):
            X.export_figure(fig, "/proc/workbench-export-test/figs", "json")

    def test_directory_in_the_way_of_the_file(self, fig, tmp_path):
        (tmp_path / "f.json").mkdir()
        with pytest.raises(X.ExportError, match=r"f\.json: a directory is in the way"):
            X.export_figure(fig, tmp_path, "json", name="f")

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
    def test_read_only_directory(self, fig, tmp_path):
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(X.ExportError, match=rf"{re.escape(str(ro))}: the directory is not writable"):
                X.export_figure(fig, ro, "json")
        finally:
            ro.chmod(0o755)

    def test_read_only_directory_as_root(self, fig, tmp_path, monkeypatch):
        """Where the OS refuses the temporary file (simulated), the error names the target path."""
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(workbench.files.tempfile, "mkstemp", refuse)
        with pytest.raises(X.ExportError, match=rf"cannot write {re.escape(str(tmp_path / 'f.json'))}: Permission"):
            X.export_figure(fig, tmp_path, "json", name="f")

    def test_names_and_formats(self, fig, tmp_path):
        """The suffix picks the format; unknown formats and path-like names are refused."""
        assert X.export_figure(fig, tmp_path / "a.json")[0].name == "a.json"
        assert [p.name for p in X.export_figure(fig, tmp_path / "b.json", ("json", ".HTML"))] == ["b.json", "b.html"]
        with pytest.raises(ValueError, match=r"unknown export format 'gif'"):
            X.export_figure(fig, tmp_path, "gif")
        with pytest.raises(ValueError, match="plain file stem"):
            X.export_figure(fig, tmp_path, "json", name="../escape")


class TestStatic:
    def test_missing_chromium(self, fig, tmp_path, monkeypatch):
        """Without Chromium the error says to install the Debian package, and nothing is written."""
        monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
        with pytest.raises(X.ChromiumNotFoundError, match=r"apt-get install chromium"):
            X.export_figure(fig, tmp_path / "out", ("html", "png"))
        assert not (tmp_path / "out" / "hidden-state-norm-env-0.html").exists()

    @needs_chromium
    def test_png_single(self, fig, tmp_path):
        """One PNG without a server: PNG magic, the requested size, metadata in a tEXt chunk."""
        (path,) = X.export_figure(fig, tmp_path / "norm.png", metadata={"seed": 11}, width=320, height=200)
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (320, 200)
        assert read_metadata(path)["seed"] == 11
        assert listing(tmp_path) == ["norm.png"]

    @needs_chromium
    def test_many_images_share_one_server(self, fig, tmp_path):
        """Two figures × PNG/SVG/PDF through one kaleido server: valid files, metadata in each, server stopped."""
        import kaleido

        paths = X.export_figures({"a": fig, "b": go.Figure(go.Bar(y=[1, 2]))}, tmp_path,
                                 ("png", "svg", "pdf"), metadata={"seed": 2})
        assert [p.name for p in paths] == ["a.png", "a.svg", "a.pdf", "b.png", "b.svg", "b.pdf"]
        assert not kaleido._global_server.is_running()
        for path in paths:
            meta = read_metadata(path)
            assert meta["seed"] == 2 and meta["figure"] == path.stem
        ET.parse(tmp_path / "a.svg")  # still well-formed XML
        assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
        if shutil.which("pdfinfo"):
            info = subprocess.run(["pdfinfo", str(tmp_path / "a.pdf")], capture_output=True, text=True)
            assert info.returncode == 0 and "Hidden-state norm, env 0" in info.stdout
            assert "Syntax Error" not in info.stderr
        if shutil.which("pdftoppm"):
            subprocess.run(["pdftoppm", "-png", "-r", "20", str(tmp_path / "a.pdf"), str(tmp_path / "page")],
                           check=True, capture_output=True)
            assert (tmp_path / "page-1.png").read_bytes().startswith(b"\x89PNG")
