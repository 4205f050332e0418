"""Voila as ``python -m workbench app`` runs it: files for the app's download links, behind the token.

Voila serves files under its root at ``/voila/files/<path>`` (those matching its
``VoilaConfiguration.file_allowlist`` and no ``file_denylist`` rule) to anyone who can reach
the port: its file handler asks for no token. This launcher serves the same files only to a
logged-in browser (the token, or the cookie it sets), so allowing the exported formats does
not hand them to other users of the machine; unauthenticated requests are sent to the login
page. It also allows :data:`EXPORTED` by default, so the export panel's download links work.

Run ``python -m workbench.voila_app NOTEBOOK [voila options]``; ``python -m workbench app`` does,
with the address, port and token rules of ``lab``.

Examples:
    >>> import re
    >>> all(re.fullmatch(EXPORTED, f"exports/run-1/fig.{ext}", re.IGNORECASE) for ext in ("html", "png", "csv"))
    True
    >>> re.fullmatch(EXPORTED, "app.ipynb") is None
    True
"""

from __future__ import annotations

from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from voila.app import Voila

from ._compat import voila_file_handler

AllowListFileHandler = voila_file_handler()

__all__ = ["EXPORTED", "AuthenticatedAllowListFileHandler", "WorkbenchVoila", "main"]

EXPORTED = r".*\.(html|png|svg|pdf|json|csv|jpg|gif)"
"""the files the app's links point at (what :mod:`workbench.export` and :mod:`workbench.report` write), and
Voila's own default (images): served under the notebook's folder to the token's holder"""


class AuthenticatedAllowListFileHandler(JupyterHandler, AllowListFileHandler):
    """Voila's allow-listed file handler, for logged-in users only (as Jupyter's own ``/files/``)."""

    @property
    def content_security_policy(self) -> str:
        # an HTML page opened from here runs its scripts in a unique origin, away from the kernel's API
        return super().content_security_policy + "; sandbox allow-scripts"

    def write_error(self, status_code: int, **kwargs) -> None:
        # Jupyter's error page needs a template Voila's server does not have: tornado's plain one
        web.RequestHandler.write_error(self, status_code, **kwargs)

    @web.authenticated
    def head(self, path: str):
        return AllowListFileHandler.head(self, path)

    @web.authenticated
    def get(self, path: str, include_body: bool = True):
        return AllowListFileHandler.get(self, path, include_body)


class WorkbenchVoila(Voila):
    """Voila with :class:`AuthenticatedAllowListFileHandler` for ``/voila/files/`` and :data:`EXPORTED` allowed."""

    def init_handlers(self):
        handlers = []
        for spec in super().init_handlers():
            if len(spec) >= 2 and spec[1] is AllowListFileHandler:
                spec = (spec[0], AuthenticatedAllowListFileHandler, *spec[2:])
            handlers.append(spec)
        return handlers

    def initialize(self, argv=None):
        # a default: the command line and config files, read by Voila's initialize, still win
        self.config.VoilaConfiguration.file_allowlist = [EXPORTED]
        return super().initialize(argv)


def main(argv=None) -> None:
    """Runs :class:`WorkbenchVoila` with ``argv`` (default: the command line)."""
    WorkbenchVoila.launch_instance(argv)


if __name__ == "__main__":
    main()
