"""The app as ``python -m workbench app`` serves it: real Voila, driven by clicks in headless Chromium.

Voila renders notebooks/app.ipynb without its code; Build policy, Run rollout, the explorer, an
export and the report work by clicks; the download links fetch the files through Voila; nothing
is served without the token. The same links are checked in JupyterLab (the ``lab_server`` fixture),
where Lab resolves them relative to the notebook. Slow: a Voila server, a kernel, a rollout.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from browser_fixtures import SCREENSHOTS, _stop, browser_missing
from workbench.benchmark.ui import CELL_ERRORS, KERNEL_IDLE

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

REPO = Path(__file__).resolve().parent.parent
SHOTS = SCREENSHOTS
HEATMAP_SHAPE = """([units, steps]) => { const gd = document.querySelector('.wb-view-timeline .js-plotly-plot');
  const t = gd && gd._fullData ? gd._fullData[0] : null;
  return !!t && t.type === 'heatmap' && t.z.length === units && t.z[0].length === steps; }"""


def _status(base: str, path: str) -> tuple[int, str]:
    """The status and Location of a GET without following redirects (and without cookies)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Location") or ""
    finally:
        conn.close()


@pytest.fixture(scope="module")
def voila_app(tmp_path_factory):
    """``(url with token, root)`` of ``python -m workbench app --headless`` serving a copy of app.ipynb."""
    tmp = tmp_path_factory.mktemp("voila-app")
    root = tmp / "notebooks"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "app.ipynb", root / "app.ipynb")
    log_path = tmp / "voila.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--headless", "--port", str(_port()),
                                 "--notebook", str(root / "app.ipynb")],
                                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = _wait_ready(proc, log_path)
            yield url, root
        finally:
            _stop(proc)


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, log_path: Path, timeout: float = 120) -> str:
    started = time.time()
    url = None
    while time.time() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"workbench app exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        if url is None:
            found = re.search(r"^URL: (\S+)$", log_path.read_text(), re.M)
            url = found.group(1) if found else None
        if url is not None:
            try:
                if _status(url, "/login")[0] == 200:  # the login page: cheap, starts no kernel
                    return url
            except OSError:
                pass
        time.sleep(0.3)
    raise TimeoutError(f"workbench app not ready after {timeout} s: {log_path.read_text()[-2000:]}")


def _set(panel, label: str, value: str) -> None:
    box = panel.locator(".widget-inline-hbox", has=panel.page.locator("label", has_text=label)).first
    field = box.locator("input")
    field.fill(value)
    field.press("Enter")


def _fetch(page, link) -> tuple[int, bytes]:
    """What the browser gets for the link's resolved href, with the page's cookies (the login)."""
    href = link.evaluate("a => a.href")
    response = page.request.get(href)
    return response.status, response.body()


def test_requests_without_the_token_are_refused(voila_app):
    """The page, the files and the kernels API redirect to the login page without the token; a wrong
    token too."""
    url, root = voila_app
    (root / "exports").mkdir(exist_ok=True)
    (root / "exports" / "probe.json").write_text("{}")
    token = re.search(r"token=(\w+)", url).group(1)
    for path in ("/", "/?token=wrong", "/voila/files/exports/probe.json", "/api/kernels"):
        status, location = _status(url, path)
        assert status == 302 and "/login" in location, (path, status, location)
    assert _status(url, f"/voila/files/exports/probe.json?token={token}")[0] == 200
    assert _status(url, f"/voila/files/app.ipynb?token={token}")[0] == 403  # the code is never served


def test_voila_app_build_rollout_export_report(voila_app, browser):
    """No code cell; Build policy → Run rollout → explorer drawn; an export's and the report's download
    links fetch the files through Voila (the browser's own download too); Export all writes one file per
    figure."""
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)  # a kernel start and a rollout on a busy 2-core box
    url, root = voila_app
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(120_000)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(url)
        app = page.locator(".wb-app")
        expect(app).to_be_visible()
        assert page.locator(".jp-CodeCell .jp-InputArea, .jp-InputArea-editor, .CodeMirror, .cm-editor").count() == 0
        assert "WorkbenchApp(" not in page.locator("body").inner_text()
        expect(page.locator(".wb-app h2", has_text="GRU Workbench")).to_have_count(1)  # the one title line

        policy = page.locator(".wb-policy")
        policy.locator(".widget-button", has_text="Build policy").click()
        expect(policy).to_contain_text("GRU 16 × 1 layer(s)")
        rollout = page.locator(".wb-rollout")
        _set(rollout, "steps per env", "60")
        rollout.locator(".widget-button", has_text="Run rollout").click()
        expect(rollout).to_contain_text("All checks passed")
        page.wait_for_function(HEATMAP_SHAPE, arg=[16, 60])
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SHOTS / "voila-app.png")  # the viewport: 1280 × 800

        export = page.locator(".wb-export")
        export.locator("select").first.select_option(label="explorer · hidden_heatmap")
        export.locator(".widget-button", has_text=re.compile(r"^\s*Export\s*$")).click()
        expect(export).to_contain_text("Wrote 1 file(s).")
        link = export.locator(".wb-written a[download]")
        expect(link).to_have_count(1)
        written = root / "exports" / "hidden_heatmap.html"
        assert link.get_attribute("download") == "hidden_heatmap.html" and written.is_file()
        status, body = _fetch(page, link)
        assert status == 200 and body == written.read_bytes()
        with page.expect_download() as download:  # what a user's click does
            link.click()
        assert Path(download.value.path()).read_bytes() == written.read_bytes()

        export.locator(".widget-button", has_text="Report").click()
        expect(export).to_contain_text("Wrote 1 file(s).")
        link = export.locator(".wb-written a[download]")
        expect(link).to_have_text(re.compile(r"report-cartpole-v1-\d{8}-\d{6}\.html"))
        status, body = _fetch(page, link)
        assert status == 200 and b"<h2>Diagnostics</h2>" in body and b"Replay matches the rollout" in body
        assert body.count(b"<script type='text/javascript'>") == 1

        export.get_by_role("checkbox", name="HTML", exact=True).uncheck()
        export.get_by_role("checkbox", name="JSON", exact=True).check()
        export.locator(".widget-button", has_text="Export all").click()
        links = export.locator(".wb-written a[download]")
        expect(links.first).to_have_attribute("download", re.compile(r"^rollout-.*\.json$"))
        n = links.count()
        assert n >= 5 and all(links.nth(i).get_attribute("download").endswith(".json") for i in range(n))
        assert _fetch(page, links.nth(0))[0] == 200

        assert page.locator(".wb-msg-error").count() == 0
        assert [e for e in errors if "ERR_NAME_NOT_RESOLVED" not in e and "ERR_INTERNET" not in e] == []
    finally:
        context.close()


def test_download_links_work_in_lab(lab_server, page):
    """In JupyterLab the same links (relative to the notebook) become the server's files/ URLs and fetch the file."""
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)
    base, token, root = lab_server
    page.goto(f"{base}/doc/tree/app.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE)
    ok = page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    assert ok is True, page.evaluate(CELL_ERRORS)
    page.locator(".wb-policy .widget-button", has_text="Build policy").click()
    rollout = page.locator(".wb-rollout")
    _set(rollout, "steps per env", "40")
    rollout.locator(".widget-button", has_text="Run rollout").click()
    expect(rollout).to_contain_text("All checks passed")
    export = page.locator(".wb-export")
    export.locator(".widget-button", has_text="Report").click()
    expect(export).to_contain_text("Wrote 1 file(s).")
    link = export.locator(".wb-written a[download]")
    page.wait_for_function("a => a.href.includes('/files/exports/report-')", arg=link.element_handle())
    (written,) = (root / "exports").glob("report-*.html")
    status, body = _fetch(page, link)
    assert status == 200 and body == written.read_bytes()
    with page.expect_download() as download:  # a click downloads it (Lab does not open it in a tab)
        link.click()
    assert Path(download.value.path()).read_bytes() == written.read_bytes()
