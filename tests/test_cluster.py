"""workbench.cluster: the embedded Ray starts and leaves nothing behind; a bad or unreachable address is one line."""
import time

import pytest

from workbench.cluster import parse_address, ray_session
from workbench.errors import ClusterError


@pytest.mark.parametrize("address", ["", "head", "ray://head", "head:0", "head:70000", "ray://:10001"])
def test_malformed_addresses_name_the_argument(address):
    with pytest.raises(ClusterError, match=r"^--address: expected 'auto', 'host:port' or 'ray://host:port'; got "):
        parse_address(address)


def test_unreachable_address_fails_fast_in_one_line():
    started = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        with ray_session("127.0.0.1:1", what="address"):
            pytest.fail("joined a cluster that does not exist")
    message = str(caught.value)
    assert message.startswith("address: cannot reach the Ray cluster at '127.0.0.1:1'") and "\n" not in message
    assert time.monotonic() - started < 60  # not Ray's own minute of retries (generous: a loaded machine)


@pytest.mark.slow
def test_embedded_ray_runs_tasks_and_cleans_up(monkeypatch):
    import os
    import tempfile

    ray = pytest.importorskip("ray")
    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k)) or made[-1])
    with ray_session(num_cpus=1):
        assert ray.is_initialized()
        assert ray.get(ray.remote(lambda x: x * 2).remote(21)) == 42
        assert ray.cluster_resources().get("CPU") == 1
        with ray_session():  # nested: the running Ray is reused and left running
            pass
        assert ray.is_initialized()
    assert not ray.is_initialized()
    assert made and not any(os.path.exists(path) for path in made)  # its session folder is gone
