"""The command line, run as a user runs it: ``python -m workbench ...`` in a subprocess."""
from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request



def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m workbench ARGS`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "workbench", *args],
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_every_command_with_its_help():
    """``--help`` names each subcommand next to a one-line help text."""
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in ("lab", "info"):
        assert re.search(rf"^\s+{name}\s+\w", result.stdout, re.MULTILINE), result.stdout


def test_info_prints_versions_and_device():
    """``info`` prints the torch version, the default device and the thread count."""
    import torch

    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^torch\s+{re.escape(torch.__version__)}$", result.stdout, re.MULTILINE)
    assert re.search(r"^device\s+(cpu|cuda)$", result.stdout, re.MULTILINE)
    assert re.search(r"^torch threads\s+\d+$", result.stdout, re.MULTILINE)
    for name in ("python", "tensordict", "torchrl", "gymnasium"):
        assert re.search(rf"^{name}\s+\d", result.stdout, re.MULTILINE), result.stdout


def test_unknown_option_is_an_error_outside_lab():
    """Only ``lab`` passes unknown options on; elsewhere they are a usage error."""
    result = run_cli("info", "--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def test_lab_headless_serves_the_notebooks(tmp_path):
    """``lab --headless`` prints a URL with a token that opens ``notebooks/``, and the server answers on it;
    it serves the repository, so the file browser reaches the shipped agents in ``assets/agents``."""
    port = free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "lab", "--headless", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    log: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            try:
                log.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "".join(log)
                continue
            match = re.search(r"URL: (http://\S+)", log[-1])
            url = match and match.group(1)
        assert url, "no URL printed:\n" + "".join(log)
        assert url.startswith(f"http://127.0.0.1:{port}/lab/tree/notebooks?token=")
        token = url.split("token=")[1]

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "server exited:\n" + "".join(log)
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    status = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline, "server never answered:\n" + "".join(log)
                time.sleep(0.5)
        assert "started" in status
        with urllib.request.urlopen(f"{base}/api/contents/notebooks?token={token}", timeout=10) as r:
            names = {item["name"] for item in json.load(r)["content"]}
        assert "01-quickstart.ipynb" in names
        # the shipped agents, reachable from Lab's file browser: the folder lists (a folder named "checkpoints"
        # would not: jupyter-server routes ".../checkpoints" to its own file-checkpoints API)
        with urllib.request.urlopen(f"{base}/api/contents/assets/agents?content=1&token={token}", timeout=10) as r:
            listing = json.load(r)
        assert listing["type"] == "directory"
        assert {"cartpole_novel.pt", "cue_memory.pt"} <= {item["name"] for item in listing["content"]}
        for name in ("cartpole_novel.pt", "cue_memory.pt"):
            with urllib.request.urlopen(f"{base}/api/contents/assets/agents/{name}?content=0&token={token}",
                                        timeout=10) as r:
                assert json.load(r)["path"] == f"assets/agents/{name}"
        with urllib.request.urlopen(url, timeout=30) as r:  # the printed URL: Lab, opened on notebooks/
            page = r.read().decode()
        config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                      page, re.S).group(1))
        assert config["treePath"] == "notebooks" and config["preferredPath"].strip("/") == "notebooks"
    finally:
        proc.terminate()  # SIGTERM: jupyter-server shuts down cleanly
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
