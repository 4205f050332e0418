"""workbench.export: files that open offline, embedded metadata, atomic writes, clear path errors."""

from __future__ import annotations

import hashlib
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
from workbench.embedded_metadata import FOOTER_ID, read_metadata
from workbench import provenance
from workbench.errors import Cancelled, ConfigError
from workbench.figures import hidden_heatmap, outline_units, pca_figure, set_pca_cursor, set_time_cursor
from workbench.jobs import CancelToken

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
        (path,) = X.export_figure(fig, tmp_path / "norm.png", metadata={"seed": 11}, width=320, height=200, scale=1)
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


# ---------------------------------------------------------------------------- the data, not the UI
def page_figure(path: Path) -> dict:
    """The figure (data and layout) a page passes to ``Plotly.newPlot``."""
    page = path.read_text(encoding="utf-8")
    start = re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page).end()
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(page, start)
    layout, _ = decoder.raw_decode(page, re.match(r"\s*,\s*", page[end:]).end() + end)
    return {"data": data, "layout": layout}


def marks_of(figure: dict) -> list[tuple[str, str]]:
    """``(kind, name)`` of every shape and trace named like a mark, in order."""
    shapes = [("shape", s.get("name")) for s in figure["layout"].get("shapes", [])]
    traces = [("trace", t.get("name")) for t in figure["data"]]
    return [(kind, name) for kind, name in shapes + traces if name in ("cursor", "selection")]


@pytest.fixture
def marked():
    """A hidden-state heatmap with the time cursor and two unit outlines, and a PCA with its cursor."""
    gen = torch.Generator().manual_seed(0)
    heat = outline_units(set_time_cursor(hidden_heatmap(torch.tanh(torch.randn(2, 12, 1, 4, generator=gen))), 3),
                         [1, 2], 2, 5)
    pca = set_pca_cursor(pca_figure(torch.randn(1, 20, 3, generator=gen)), env=0, step=4)
    return {"heat": heat, "pca": pca}


class TestMarks:
    def test_left_out_by_default(self, marked, tmp_path):
        """HTML and JSON show the data without the cursor and the selection; the figures passed are unchanged."""
        before = {name: fig.to_json() for name, fig in marked.items()}
        assert marks_of(json.loads(before["heat"])) == [("shape", "cursor"), ("shape", "selection"),
                                                       ("shape", "selection")]
        assert marks_of(json.loads(before["pca"])) == [("trace", "cursor")]
        for name, fig in marked.items():
            html_path, json_path = X.export_figure(fig, tmp_path, ("html", "json"), name=name)
            assert marks_of(page_figure(html_path)) == [] and marks_of(json.loads(json_path.read_text())) == []
            assert fig.to_json() == before[name]
        back, _ = X.load_figure(tmp_path / "heat.json")
        assert [s.name for s in back.layout.shapes] == ["episode"]  # the data's own shapes stay
        assert [t.name for t in X.load_figure(tmp_path / "pca.json")[0].data] == ["env 0", "start", "reset (is_init)"]

    def test_kept_when_asked(self, marked, tmp_path):
        """include_marks=True keeps every mark where it was; a name keeps only that mark."""
        for name, fig in marked.items():
            html_path, json_path = X.export_figure(fig, tmp_path, ("html", "json"), name=name, include_marks=True)
            want = marks_of(json.loads(fig.to_json()))
            assert marks_of(page_figure(html_path)) == want == marks_of(json.loads(json_path.read_text()))
        cursor = [s for s in page_figure(tmp_path / "heat.html")["layout"]["shapes"] if s["name"] == "cursor"]
        assert [(s["x0"], s["x1"]) for s in cursor] == [(3, 3)]
        (path,) = X.export_figure(marked["heat"], tmp_path / "cursor-only.json", include_marks=("cursor",))
        assert marks_of(json.loads(path.read_text())) == [("shape", "cursor")]
        with pytest.raises(ConfigError, match=r"include_marks must be True, False or some of \['cursor', 'selection', 'band'\]"):
            X.export_figure(marked["heat"], tmp_path / "bad.json", include_marks=("cursr",))

    def test_figure_widget_and_dict(self, marked, tmp_path):
        """A FigureWidget or a figure dict is exported the same way, and is not changed either."""
        widget = go.FigureWidget(marked["heat"])
        (path,) = X.export_figure(widget, tmp_path / "w.json")
        assert marks_of(json.loads(path.read_text())) == [] and len(widget.layout.shapes) == 4
        spec = marked["pca"].to_dict()
        (path,) = X.export_figure(spec, tmp_path / "d.json")
        assert marks_of(json.loads(path.read_text())) == [] and spec["data"][-1]["name"] == "cursor"

    @needs_chromium
    def test_images_leave_them_out(self, marked, tmp_path):
        """The SVG has no line in the cursor's colour unless asked (the PNG/PDF come from the same copy)."""
        red = "rgb(214, 39, 40)"  # CURSOR_LINE's #d62728 as Chromium writes it
        plain = X.export_figure(marked["heat"], tmp_path / "plain.svg")[0].read_text()
        kept = X.export_figure(marked["heat"], tmp_path / "kept.svg", include_marks=True)[0].read_text()
        assert red not in plain and red in kept


# ---------------------------------------------------------------------------- size
class TestSize:
    @pytest.mark.parametrize("kwargs, match", [
        (dict(width=5), r"width must be a whole number of CSS pixels in \[10, 8000\]; got 5\."),
        (dict(height=9000), r"height must be .* got 9000\."),
        (dict(width=800.5), r"width must be .* got 800\.5\."),
        (dict(width=True), r"width must be .* got True\."),
        (dict(height="600"), r"height must be .* got '600'\."),
        (dict(scale=0), r"scale \(the PNG's pixel density\) must be a number in \[0\.1, 8\.0\]; got 0\."),
        (dict(scale=float("nan")), r"scale .* got nan\."),
        (dict(width=5000, scale=4), r"width × scale = 5000 × 4 = 20000 pixels, more than a PNG side can be"),
    ])
    def test_bad_values_are_named(self, fig, tmp_path, kwargs, match):
        """A size out of range: a ConfigError naming the argument and its range; nothing written."""
        with pytest.raises(ConfigError, match=match):
            X.export_figure(fig, tmp_path / "out", ("html", "json"), **kwargs)
        with pytest.raises(ConfigError, match=match):
            X.export_figures({"a": fig}, tmp_path / "out", **kwargs)
        assert not (tmp_path / "out").exists()

    def test_html_and_json_take_the_size(self, fig, tmp_path):
        """The page's plot is width × height CSS pixels, and so is the JSON's layout; the figure keeps its own."""
        html_path, json_path = X.export_figure(fig, tmp_path, ("html", "json"), name="f", width=700, height=350)
        page = html_path.read_text(encoding="utf-8")
        sized = '<div style="height:350px; width:700px;">'  # plotly's box around the plot's div
        assert page.count(sized) == 1 and page.index(sized) < page.index('<div id="workbench-f"')
        layout = page_figure(html_path)["layout"]
        assert (layout["width"], layout["height"]) == (700, 350)
        assert (json.loads(json_path.read_text())["layout"]["width"], fig.layout.width) == (700, 400)
        (only,) = X.export_figure(fig, tmp_path / "h.json", height=250)  # the other side stays the figure's
        assert [json.loads(only.read_text())["layout"][k] for k in ("width", "height")] == [400, 250]

    def test_figure_size(self, fig):
        assert X.figure_size(fig) == (400, 300)
        assert X.figure_size(go.Figure()) == (X.DEFAULT_WIDTH, X.DEFAULT_HEIGHT) == (1000, 600)
        assert X.figure_size({"layout": {"width": 500}}) == (500, 600)

    @needs_chromium
    def test_png_pixels_are_size_times_scale(self, fig, tmp_path):
        """PNG: width·scale × height·scale pixels (header); SVG/PDF: width × height, whatever the scale."""
        png, svg, pdf = X.export_figure(fig, tmp_path, ("png", "svg", "pdf"), name="s", width=300, height=180,
                                        scale=1.5)
        data = png.read_bytes()
        assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (450, 270)
        assert re.search(r'<svg[^>]* width="300" height="180"', svg.read_text())
        box = re.search(rb"MediaBox\s*\[0 0 ([\d.]+) ([\d.]+)\]", pdf.read_bytes())
        assert (round(float(box.group(1))), round(float(box.group(2)))) == (225, 135)  # 0.75 pt per CSS px
        (default,) = X.export_figure(go.Figure(go.Bar(y=[1])), tmp_path / "d.png")
        data = default.read_bytes()
        assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (2000, 1200)


# ---------------------------------------------------------------------------- origin
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The metadata of a rollout of a policy loaded from a checkpoint, and of one built here (3 steps)."""
    from workbench.checkpoints import load_checkpoint, save_checkpoint
    from workbench.envs import EnvSpec, make_env
    from workbench.policy import PolicySpec, build_policy
    from workbench.rollout import rollout, trajectory_metadata

    spec, env_spec = PolicySpec(hidden_size=4), EnvSpec("CartPole-v1")
    built = build_policy(spec, make_env(env_spec), device="cpu")
    path = save_checkpoint(built, spec, tmp_path_factory.mktemp("ckpt") / "policy.pt")
    loaded, _ = load_checkpoint(path)

    def run(policy):
        return trajectory_metadata(rollout(policy, make_env(env_spec, policy), 3, seed=7, progress=False,
                                           device="cpu"))

    return {"path": path, "loaded": run(loaded), "built": run(built)}


class TestOrigin:
    def check_origin(self, meta, runs):
        sha = hashlib.sha256(runs["path"].read_bytes()).hexdigest()
        assert meta["checkpoint"] == {"path": str(runs["path"].resolve()), "sha256": sha}
        rollout = meta["rollout"]
        assert list(rollout) == list(provenance.ROLLOUT_FIELDS)
        assert (rollout["env_id"], rollout["env"]["env_id"], rollout["seed"], rollout["steps"]) == (
            "CartPole-v1", "CartPole-v1", 7, 3)
        assert (rollout["num_envs"], rollout["deterministic"], rollout["device"]) == (1, False, "cpu")
        assert rollout["created"] == runs["loaded"]["created"] and rollout["versions"]["torch"] == torch.__version__
        assert meta["exported"] >= rollout["created"]

    def test_html_and_json_name_the_checkpoint_and_rollout(self, runs, fig, tmp_path):
        """Every file says which checkpoint (its sha256 is the file's) and which rollout made it."""
        html_path, json_path = X.export_figure(fig, tmp_path, ("html", "json"), name="f", metadata=runs["loaded"])
        for path in (html_path, json_path):
            self.check_origin(read_metadata(path), runs)
        footer = re.search(rf'<footer id="{FOOTER_ID}"[^>]*>(.*?)</footer>', html_path.read_text(), re.S).group(1)
        sha = hashlib.sha256(runs["path"].read_bytes()).hexdigest()
        assert f"Checkpoint: {runs['path'].resolve()} (sha256 {sha})" in footer
        assert "Rollout: CartPole-v1, seed 7, 1 env × 3 steps, sampled actions, policy on cpu" in footer

    def test_built_policy_says_not_saved(self, runs, fig, tmp_path):
        (html_path, json_path) = X.export_figure(fig, tmp_path, ("html", "json"), name="f", metadata=runs["built"])
        for path in (html_path, json_path):
            assert read_metadata(path)["checkpoint"] == {"path": None, "sha256": None,
                                                         "note": "built in this session, not saved"}
        assert "Checkpoint: none (built in this session, not saved)" in html_path.read_text()

    def test_no_rollout_given(self, fig, tmp_path):
        """Without a rollout's metadata the file says the checkpoint is not recorded, and has no rollout."""
        (path,) = X.export_figure(fig, tmp_path / "f.json")
        meta = read_metadata(path)
        assert meta["checkpoint"]["note"] == "not recorded" and "rollout" not in meta

    def test_footer_can_be_left_out(self, runs, fig, tmp_path):
        (path,) = X.export_figure(fig, tmp_path / "f.html", metadata=runs["loaded"], footer=False)
        assert FOOTER_ID not in path.read_text()
        self.check_origin(read_metadata(path), runs)

    def test_a_session_record(self, tmp_path):
        """A Session's provenance (``env`` an id, ``env_spec`` a dict) reads the same way."""
        record = {"env": "CartPole-v1", "env_spec": {"env_id": "CartPole-v1", "num_envs": 2}, "seed": 4,
                  "steps": 20, "num_envs": 2, "device": "cpu", "checkpoint": {"path": "/p.pt", "sha256": "ab"}}
        found = provenance.origin(record)
        assert found["checkpoint"] == {"path": "/p.pt", "sha256": "ab"}
        assert found["rollout"]["env_id"] == "CartPole-v1" and found["rollout"]["env"]["num_envs"] == 2
        assert (found["rollout"]["seed"], found["rollout"]["steps"], found["rollout"]["deterministic"]) == (4, 20, None)
        assert provenance.origin(found) == found  # stating it twice changes nothing (export_figures → export_figure)

    @needs_chromium
    def test_images_name_the_checkpoint_and_rollout(self, runs, fig, tmp_path):
        """PNG (tEXt), SVG (<metadata>) and PDF (document info) carry the same origin; no footer drawn."""
        paths = X.export_figures({"f": fig}, tmp_path, ("png", "svg", "pdf"), metadata=runs["loaded"])
        assert [p.name for p in paths] == ["f.png", "f.svg", "f.pdf"]
        for path in paths:
            self.check_origin(read_metadata(path), runs)
        assert "Checkpoint:" not in (tmp_path / "f.svg").read_text().split("</metadata>", 1)[1]


# ---------------------------------------------------------------------------- cancel and progress
class TestCancel:
    def test_cancelled_before_rendering(self, fig, tmp_path):
        token = CancelToken()
        token.cancel("test")
        with pytest.raises(Cancelled) as err:
            X.export_figure(fig, tmp_path, ("html", "json"), name="f", cancel=token)
        assert (err.value.done, err.value.total, err.value.unit, err.value.partial) == (0, 2, "formats", [])
        assert listing(tmp_path) == []

    def test_cancelled_between_formats_writes_nothing_of_that_figure(self, fig, tmp_path):
        """A figure is written whole or not at all: a cancel after its first format leaves no file."""
        token, seen = CancelToken(), []

        def progress(done, total):
            seen.append((done, total))
            token.cancel("after the first format")

        with pytest.raises(Cancelled, match=r"cancelled after 1 of 2 formats") as err:
            X.export_figure(fig, tmp_path, ("html", "json"), name="f", cancel=token, on_progress=progress)
        assert seen == [(1, 2)] and err.value.partial == [] and listing(tmp_path) == []

    def test_figures_written_before_a_cancel_stay(self, fig, tmp_path):
        """export_figures: the figures finished before the cancel stay, Cancelled.partial lists them."""
        token, seen = CancelToken(), []

        def progress(done, total):
            seen.append((done, total))
            if done == 3:  # the second figure's first format
                token.cancel("test")

        figs = {"a": fig, "b": go.Figure(fig), "c": go.Figure(fig)}
        with pytest.raises(Cancelled) as err:
            X.export_figures(figs, tmp_path, ("html", "json"), cancel=token, on_progress=progress)
        assert seen == [(1, 6), (2, 6), (3, 6)]
        assert (err.value.done, err.value.total, err.value.unit) == (1, 3, "figures")
        assert [p.name for p in err.value.partial] == ["a.html", "a.json", "plotly.min.js"]
        assert listing(tmp_path) == ["a.html", "a.json", "plotly.min.js"]  # no temporary file left

    def test_progress_counts_every_format(self, fig, tmp_path):
        seen = []
        X.export_figures({"a": fig, "b": fig}, tmp_path, ("html", "json"), on_progress=lambda d, t: seen.append((d, t)))
        assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
