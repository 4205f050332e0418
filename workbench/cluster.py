"""Where distributed work runs: an embedded local Ray by default, an existing cluster by address.

:func:`ray_session` is the one place the workbench starts or joins Ray. Without an
address it starts Ray inside this process for the duration of the ``with`` block: the
machine's CPUs, no dashboard, worker logs kept out of the terminal, its session files in a
temporary folder removed afterwards, and its servers bound to the loopback address (nothing
listens on the network). With an address it joins that cluster and only disconnects at the
end. A Ray already initialised in this process (a notebook that called ``ray.init``) is
used as it is and left running.

Examples:
    >>> parse_address(None) is None, parse_address("auto"), parse_address("ray://head:10001")
    (True, 'auto', 'ray://head:10001')
    >>> parse_address("head")
    Traceback (most recent call last):
    ...
    workbench.errors.ClusterError: --address: expected 'auto', 'host:port' or 'ray://host:port'; got 'head'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from typing import Iterator

from .errors import ClusterError

__all__ = ["parse_address", "ray_session", "cluster_cpus"]

START_RETRIES = 2
"""Starts of an embedded Ray tried again after Ray's own startup timeout (30 s, fixed), on a busy machine."""

CONNECT_TIMEOUT_S = 5.0
"""Seconds to wait for a TCP answer from a cluster address before saying it cannot be reached."""


def parse_address(address: str | None, *, what: str = "--address") -> str | None:
    """Checks a cluster address: None (embedded), ``"auto"``, ``"host:port"`` or ``"ray://host:port"``."""
    if address is None:
        return None
    if not isinstance(address, str) or not address.strip():
        raise ClusterError(f"{what}: expected 'auto', 'host:port' or 'ray://host:port'; got {address!r}")
    address = address.strip()
    if address == "auto":
        return address
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"{what}: expected 'auto', 'host:port' or 'ray://host:port'; got {address!r}")
    return address


def _reachable(address: str, what: str) -> None:
    """Fails fast, in one line, when nothing answers at ``host:port`` (Ray itself would retry for a minute)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ClusterError(f"{what}: cannot reach the Ray cluster at {address!r} ({reason})") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, what: str = "--address") -> Iterator[None]:
    """Ray for the ``with`` block: embedded (``address=None``) or the cluster at ``address``.

    Args:
        address: None for a local Ray started here; ``"auto"`` for the cluster this machine belongs
            to (``ray start`` was run); ``"host:port"`` (the head's GCS) or ``"ray://host:port"`` (Ray Client).

    Keyword Args:
        num_cpus: CPUs the embedded Ray offers (default: all of this machine's); ignored with an address.
        what: the argument's name in error messages.

    Raises:
        ClusterError: the address is malformed or unreachable, or Ray fails to start.
    """
    address = parse_address(address, what=what)
    try:
        import ray
    except ImportError as error:
        raise ClusterError(f"{what}: Ray is not installed ({error}); run `python3 dev.py` to install it") from None
    if ray.is_initialized():  # someone else's Ray: use it, leave it running
        yield
        return
    if address not in (None, "auto"):
        _reachable(address, what)
    temp_dir = None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token file in ~/.ray, no warning
    for attempt in range(1 + START_RETRIES * (address is None)):
        try:
            if address is None:
                temp_dir = tempfile.mkdtemp(prefix="wbray-", dir="/tmp" if os.path.isdir("/tmp") else None)
                ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                         configure_logging=True, logging_level="ERROR", _temp_dir=temp_dir,
                         _node_ip_address="127.0.0.1")
            else:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            break
        except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError...
            with contextlib.suppress(Exception):
                ray.shutdown()  # what the failed start left running
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if address is None and "timed out during startup" in first and attempt < START_RETRIES:
                continue  # Ray waits a fixed 30 s for its raylet; a busy machine can take longer, once
            where = "start a local Ray" if address is None else f"join the Ray cluster at {address!r}"
            raise ClusterError(f"{what}: could not {where} ({first})") from None
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def cluster_cpus() -> int:
    """CPUs the connected Ray cluster offers (call inside :func:`ray_session`)."""
    import ray

    return int(ray.cluster_resources().get("CPU", 0))
