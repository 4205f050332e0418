"""Collecting one training run on Ray: torchrl's ``RayCollector`` behind the local collector's interface.

:func:`make_ray_collector` starts (or joins, by address) Ray with :func:`workbench.cluster.ray_session`
and spreads ``config.num_envs`` environments over ``config.collectors`` remote collectors, each a torchrl
``Collector`` in its own Ray actor stepping ``num_envs / collectors`` environments. Each actor builds its
environments itself (:func:`workbench.ppo.make_train_env`, as a local run does, from the picklable
:class:`~workbench.envs.EnvSpec`, with the policy's primers); the weights follow the learner through
torchrl's weight updater (``update_policy_weights_()``, which :func:`workbench.train.train` calls after
each update). The collection is synchronous: every batch holds one segment from every collector, laid
out as the local path's ``[num_envs, T]`` rows (collector ``i`` owns rows ``i·k … i·k + k - 1``, the
same rows in every batch), with the same keys, so the update and the books do not know the difference.

On a cluster every node needs this workbench installed (the actors import :mod:`workbench`). Each
actor asks for at most one CPU and :data:`COLLECTOR_MEMORY` bytes; on a machine with fewer free CPUs
than collectors they share them.

Examples:
    >>> from workbench.train import TrainConfig
    >>> collector_envs(TrainConfig(num_envs=8, frames_per_batch=256, collectors=2))
    [(4, 0), (4, 100003)]
    >>> collector_envs(TrainConfig(num_envs=8, frames_per_batch=256, collectors=0))
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: make_ray_collector: 'config.collectors': expected an integer >= 1; got 0
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Iterator

from .errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from .envs import EnvSpec
    from .train import TrainConfig

__all__ = ["make_ray_collector", "RayCollection", "collector_envs", "COLLECTOR_MEMORY", "SEED_STRIDE"]

COLLECTOR_MEMORY = 512 * 1024**2
"""Bytes of memory each remote collector asks Ray for (one measured ~390 MB; torchrl's default asks 2 GiB)."""

SEED_STRIDE = 100_003
"""Collector ``i`` seeds its environments from ``config.seed + i * SEED_STRIDE``."""


def collector_envs(config: TrainConfig) -> list[tuple[int, int]]:
    """``(environments, seed)`` of each remote collector: ``config.num_envs`` split evenly over ``config.collectors``."""
    n = config.collectors
    if n < 1:
        raise ConfigError(f"make_ray_collector: 'config.collectors': expected an integer >= 1; got {n}")
    if config.num_envs % n:  # TrainConfig checks it too; a config from elsewhere may not have
        raise ConfigError(f"make_ray_collector: 'config.collectors': expected a divisor of 'num_envs' "
                          f"({config.num_envs}); got {n}")
    return [(config.num_envs // n, config.seed + i * SEED_STRIDE) for i in range(n)]


class _RemoteEnv:
    """Builds a collector's environments in its Ray actor (pickled: an :class:`EnvSpec` and the policy, for its primers)."""

    def __init__(self, spec: EnvSpec, policy) -> None:
        self.spec, self.policy = spec, policy

    def __call__(self):
        import torch

        from .ppo import make_train_env

        if self.spec.seed is not None:  # the actor's action sampling, reproducible per collector
            torch.manual_seed(self.spec.seed)
        return make_train_env(self.spec, self.policy)  # the training environments, as a local run makes them


class RayCollection:
    """A ``RayCollector`` and the Ray session it runs in; iterating yields ``[num_envs, T]`` batches.

    Made by :func:`make_ray_collector`. :meth:`shutdown` (idempotent) stops the remote collectors
    and then Ray (an embedded one) or the connection to the cluster.
    """

    def __init__(self, collector, session: contextlib.ExitStack, num_envs: int) -> None:
        self.collector, self._session, self.num_envs = collector, session, num_envs

    def __iter__(self) -> Iterator:
        for data in self.collector:  # [collectors, envs each, T] (or [collectors, T] with one env each)
            yield data.reshape(self.num_envs, -1)

    def update_policy_weights_(self, *args, **kwargs) -> None:
        """Sends the learner's current weights to every remote collector (torchrl's updater)."""
        self.collector.update_policy_weights_(*args, **kwargs)

    def shutdown(self) -> None:
        """Stops the remote collectors, then leaves Ray; safe to call twice."""
        collector, self.collector = self.collector, None
        try:
            if collector is not None:
                collector.shutdown()
        finally:
            self._session.close()


FREE_WAIT_S = 10.0
"""Seconds to wait for the cluster's CPUs to come free (Ray reports released resources with a delay)."""


def _remote_config(collectors: int) -> dict:
    """Ray resources per collector: one CPU, or an equal share of the free CPUs when there are fewer."""
    import time

    import ray

    # what actors just stopped (a previous run's collectors) release shows up a moment later: wait for it
    deadline = time.monotonic() + FREE_WAIT_S
    while True:
        free = ray.available_resources()
        cpus = float(free.get("CPU", 0.0))
        wanted = min(float(collectors), float(ray.cluster_resources().get("CPU", 0.0)))
        if cpus >= wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if cpus <= 0:
        raise ClusterError(f"--collectors: the Ray cluster has no free CPU for {collectors} collector(s) "
                           f"(free: {cpus:g} of {ray.cluster_resources().get('CPU', 0):g})")
    memory = float(free.get("memory", 0.0))
    if memory and memory < collectors * COLLECTOR_MEMORY:
        raise ClusterError(f"--collectors: {collectors} collector(s) need {collectors * COLLECTOR_MEMORY / 2**30:.1f} "
                           f"GiB of Ray memory; the cluster has {memory / 2**30:.1f} GiB free")
    return {"num_cpus": min(1.0, cpus / collectors), "num_gpus": 0, "memory": COLLECTOR_MEMORY}


def make_ray_collector(env_spec: EnvSpec, policy, config: TrainConfig, *, address: str | None = None) -> RayCollection:
    """A synchronous ``RayCollector`` for ``config``: ``config.collectors`` remote collectors, ``[num_envs, T]`` batches.

    Starts an embedded Ray (``address=None``) or joins the cluster at ``address``
    (:func:`workbench.cluster.ray_session`); the returned collection leaves it on
    :meth:`RayCollection.shutdown`. The first weight update (which sets up torchrl's
    communication group) is done here, so the first batch is collected with ``policy``'s weights.

    Args:
        env_spec: the environments (all ``config.num_envs`` of them; each collector gets its
            share, with its own seed: :func:`collector_envs`).
        policy: the collection policy (actor and critic); its weights are sent on each update.
        config: the run (``collectors``, ``frames_per_batch``, ``total_frames``).

    Keyword Args:
        address: a Ray cluster's address, or None for a local Ray started here.

    Raises:
        ConfigError: ``config.collectors`` is not a divisor of ``config.num_envs`` (or < 1).
        ClusterError: Ray cannot start, the address cannot be reached, or it has no room for the collectors.
    """
    from torchrl.collectors.distributed import RayCollector
    from torchrl.envs.utils import ExplorationType

    from .cluster import ray_session

    shares = collector_envs(config)
    session = contextlib.ExitStack()
    collector = None
    try:
        session.enter_context(ray_session(address))
        makers = [_RemoteEnv(dataclasses.replace(env_spec, num_envs=envs, seed=None if env_spec.seed is None else seed),
                             policy) for envs, seed in shares]
        collector = RayCollector(
            makers, policy, frames_per_batch=config.frames_per_batch, total_frames=config.total_frames, sync=True,
            exploration_type=ExplorationType.RANDOM, collector_kwargs={"auto_register_policy_transforms": False},
            remote_configs=_remote_config(config.collectors),
        )
        collector.update_policy_weights_()  # connects the weight sync (a gloo group); else torchrl warns
        return RayCollection(collector, session, config.num_envs)
    except BaseException:  # Ctrl-C during the (slow) start too: no actor, no Ray left behind
        try:
            if collector is not None:
                collector.shutdown()
        finally:
            session.close()
        raise

