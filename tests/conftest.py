"""Shared fixtures: the browser-test fixtures (JupyterLab server, Chromium, page) live in browser_fixtures.py."""

from browser_fixtures import browser, lab_server, page  # noqa: F401
