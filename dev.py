#!/usr/bin/env python3
"""Set up the project and run it: the two commands of the README.

    python3 dev.py lab [--headless] [args...]   set up, then open JupyterLab on notebooks/ (it serves the
                                                repository, so its file browser reaches assets/ too)
    python3 dev.py app [--headless] [args...]   set up, then serve the app with Voila (no code shown)
    python3 dev.py test [pytest args...]        set up, then run the whole pytest suite

Setup is idempotent: it creates ``.venv`` with the running Python if it is missing, installs
torch (``torch==2.13.0``, the CPU build, unless torch is already importable there), then
``pip install -e ".[dev]"``. A stamp in ``.venv`` (a hash of pyproject.toml, this file and
the torch spec) lets a second run skip the install steps.

Environment:
    WORKBENCH_TORCH   pip requirement used when torch is missing (default ``torch==2.13.0``),
                      e.g. ``WORKBENCH_TORCH="torch==2.13.0 --index-url <your CUDA index>"``.

Standard library only: this file runs before anything is installed.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

MIN_PYTHON = (3, 10)
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".workbench-setup"
TORCH_SPEC = os.environ.get("WORKBENCH_TORCH", "torch==2.13.0")


def say(message: str) -> None:
    """Print one progress line."""
    print(f"[dev] {message}", flush=True)


def run(cmd: list[str], **kwargs) -> None:
    """Run a command, echoing it; exit with its code if it fails."""
    say("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT, **kwargs)
    if code:
        say(f"failed with exit code {code}: {cmd[0]}")
        sys.exit(code)


def venv_has(module: str) -> bool:
    """Whether ``module`` is importable in the venv (found, not imported: fast)."""
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.call([str(VENV_PYTHON), "-c", probe]) == 0


def setup_fingerprint() -> str:
    """Hash of what the install steps depend on (this file too, so a new step runs once)."""
    h = hashlib.sha256()
    for part in ((ROOT / "pyproject.toml").read_bytes(), Path(__file__).read_bytes(), TORCH_SPEC.encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


# --- setup steps: each is idempotent; add new ones to SETUP_STEPS or INSTALL_STEPS ----------

def check_python() -> None:
    """Refuse a Python that is too old, with a clear message."""
    if sys.version_info < MIN_PYTHON:
        want = ".".join(map(str, MIN_PYTHON))
        sys.exit(f"[dev] Python >= {want} is needed; this is {sys.version.split()[0]} "
                 f"({sys.executable}). Run dev.py with a newer python3.")


def ensure_venv() -> None:
    """Create .venv with the running Python if it is missing."""
    if VENV_PYTHON.exists():
        return
    say(f"creating {VENV.name}/ with {sys.executable} ({sys.version.split()[0]})")
    code = subprocess.call([sys.executable, "-m", "venv", str(VENV)])
    if code or not VENV_PYTHON.exists():
        sys.exit("[dev] could not create .venv; on Debian/Ubuntu install python3-venv "
                 "(apt-get install python3-venv), then run again.")


def ensure_torch() -> None:
    """Install torch first, explicitly, unless the venv already has one (a CUDA user keeps theirs)."""
    if venv_has("torch"):
        return
    say(f"installing {TORCH_SPEC} (set WORKBENCH_TORCH to choose another build)")
    run([VENV_PYTHON, "-m", "pip", "install", "-q", *shlex.split(TORCH_SPEC)])


def install_project() -> None:
    """Editable install of the project with its lab and test extras."""
    say('installing the project: pip install -e ".[dev]"')
    run([VENV_PYTHON, "-m", "pip", "install", "-q", "-e", ".[dev]"])


SYSTEM_PACKAGES = {"chromium": "chromium", "pdftoppm": "poppler-utils"}
"""Debian packages the project uses, by the command that shows they are there: Chromium renders
PNG/SVG/PDF exports (kaleido) and drives the browser tests; pdftoppm checks exported PDFs."""


def ensure_system_packages() -> None:
    """Install the Debian packages above when missing (as root with apt-get); else say how."""
    import shutil

    missing = [pkg for cmd, pkg in SYSTEM_PACKAGES.items() if shutil.which(cmd) is None]
    if not missing:
        return
    can_install = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0
    if not can_install:
        say(f"missing system packages {missing}: static figure export and browser tests need them; "
            f"install with: sudo apt-get install -y {' '.join(missing)}")
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", *missing], env=env, stdout=subprocess.DEVNULL)


#: Cheap steps, run every time (each checks before it acts).
SETUP_STEPS = [check_python, ensure_system_packages, ensure_venv]
#: Install steps, in order, skipped while the stamp is current.
INSTALL_STEPS = [ensure_torch, install_project]


def setup() -> None:
    """Run the setup steps; skip the install steps when nothing they depend on changed."""
    start = time.monotonic()
    for step in SETUP_STEPS:
        step()
    fingerprint = setup_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        say(f"environment up to date ({VENV.name}/; delete {STAMP.relative_to(ROOT)} to reinstall)")
    else:
        for step in INSTALL_STEPS:
            step()
        STAMP.write_text(fingerprint + "\n")
    say(f"setup done in {time.monotonic() - start:.1f} s")


def handoff(cmd: list[str]) -> None:
    """Replace this process with ``cmd`` in the venv (so signals reach it directly)."""
    cmd = [str(c) for c in cmd]
    say("$ " + " ".join(shlex.quote(c) for c in cmd))
    os.chdir(ROOT)
    if os.name == "nt":
        sys.exit(subprocess.call(cmd))
    os.execv(cmd[0], cmd)


def cmd_lab(args: list[str]) -> None:
    """Open JupyterLab on notebooks/, serving the repository (``--headless``: no browser, print the URL)."""
    handoff([VENV_PYTHON, "-m", "workbench", "lab", *args])


def cmd_test(args: list[str]) -> None:
    """Run the whole pytest suite; extra arguments go to pytest."""
    handoff([VENV_PYTHON, "-m", "pytest", *args])


def cmd_app(args: list[str]) -> None:
    """Serve the app (notebooks/app.ipynb) with Voila, without code (``--headless``: print the URL)."""
    handoff([VENV_PYTHON, "-m", "workbench", "app", *args])


COMMANDS = {"lab": cmd_lab, "app": cmd_app, "test": cmd_test}


def main(argv: list[str]) -> None:
    """Parse ``dev.py COMMAND [args...]``, set up, then run the command."""
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        sys.exit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    command, rest = argv[0], argv[1:]
    setup()
    COMMANDS[command](rest)


if __name__ == "__main__":
    main(sys.argv[1:])
