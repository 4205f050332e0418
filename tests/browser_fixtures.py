"""Fixtures for the browser tests: a JupyterLab server per session and a headless Debian Chromium.

Following RECIPES-jupyter.md §4: the server runs on 127.0.0.1 with a token, on a fresh copy of
``notebooks/`` (Lab may autosave into it), with a settings directory that turns off the news toast
and the notebook's windowing (every cell stays rendered, so widgets and figures far down the page
are drawn); it is started with ``Popen([sys.executable, "-m", "jupyterlab", ...])`` and terminated
at the end (its kernels with it). Chromium is driven by Playwright with the recipes' arguments.
``tests/conftest.py`` imports these fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TOKEN = "workbench-test-token"
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


SCREENSHOTS = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or Path(tempfile.gettempdir()) / "workbench-screenshots")
"""where the browser tests put their screenshots: a temporary folder, so running the tests never touches the
shipped ones; ``WORKBENCH_SCREENSHOTS=assets/screenshots`` renews the README's pictures"""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (``None`` when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (python3 dev.py test installs it; or set CHROMIUM_PATH)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd, cwd, env, log, ready_url, timeout=90) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    started = time.time()
    while time.time() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early ({proc.returncode}); see {log.name}")
        try:
            urllib.request.urlopen(ready_url, timeout=2).read()
            return proc
        except Exception:
            time.sleep(0.2)
    _stop(proc)
    raise TimeoutError(f"no answer from {ready_url} after {timeout} s; see {log.name}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: jupyter-server shuts its kernels down too
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """``(base_url, token, root)`` of a JupyterLab serving a copy of ``notebooks/`` from ``root``."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "exports", "checkpoints"))
    # notebooks read the shipped checkpoints as ../assets/agents/
    shutil.copytree(NOTEBOOKS.parent / "assets" / "agents", tmp / "assets" / "agents")
    for name, values in LAB_SETTINGS.items():
        path = tmp / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={root}",
           f"--IdentityProvider.token={TOKEN}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: commands and models
    base = f"http://127.0.0.1:{port}"
    with open(tmp / "server.log", "w") as log:
        proc = _start(cmd, root, env, log, f"{base}/api/status?token={TOKEN}")
        try:
            yield base, TOKEN, root
        finally:
            _stop(proc)


@pytest.fixture(scope="session")
def browser():
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh page (tall viewport, so a whole panel fits in a screenshot) that records console errors."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 2400})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    try:
        yield pg
    finally:
        ctx.close()
