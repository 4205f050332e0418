"""One run, one owner: :class:`Session` holds the sizes, the policy, the environment, the
trajectory, the diagnostics report and the provenance.

A session is made from an :class:`~workbench.envs.EnvSpec` and a
:class:`~workbench.policy.PolicySpec`, or from a checkpoint. Its state is plain
attributes (``None`` until the call that makes them), and ``repr`` shows it.
The environment is made on first use with the policy's primer and closed by
:meth:`Session.close`, at the end of a ``with`` block, and when a rollout fails.

Examples:
    >>> from workbench.envs import EnvSpec
    >>> from workbench.policy import PolicySpec
    >>> session = Session(EnvSpec("CartPole-v1"), PolicySpec(hidden_size=8), device="cpu")
    >>> session
    Session(CartPole-v1, GRU 8 × 1 built, cpu; env: not made; wiring: not checked; trajectory: none; report: none)
    >>> with session:
    ...     traj = session.rollout(20, seed=0, progress=False)
    ...     report = session.diagnose()
    >>> traj.batch_size, report.ok
    (torch.Size([1, 20]), True)
    >>> session
    Session(CartPole-v1, GRU 8 × 1 built, cpu; env: closed; wiring: ok; trajectory: [1, 20]; report: 0 errors, 0 warnings)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from tensordict import TensorDictBase

from .envs import VELOCITY_MASKS, EnvSpec, make_env
from .errors import ConfigError, WorkbenchError
from .keys import KEYS
from .checkpoints import load_checkpoint
from .policy import PolicyIO, PolicySpec, build_policy, policy_spec_of, recurrent_modules, resolve_device
from .workers import WORKER_TIMEOUT_S, close_env

__all__ = ["Session", "SessionError", "policy_io"]


class SessionError(WorkbenchError, RuntimeError):
    """A :class:`Session` call made before what it needs exists (e.g. ``diagnose()`` before ``rollout()``)."""


def policy_io(env_spec: EnvSpec) -> PolicyIO:
    """The sizes a policy for ``env_spec`` needs, from one in-process environment made for that and closed at once.

    Examples:
        >>> policy_io(EnvSpec("CartPole-v1", hide_velocity=True, num_envs=4, parallel=True))
        PolicyIO(observation_size=2, action_kind='categorical', action_size=2, action_low=None, action_high=None)
    """
    if not isinstance(env_spec, EnvSpec):
        raise ConfigError(f"policy_io: 'env_spec' must be an EnvSpec; got {type(env_spec).__name__}.")
    env = make_env(dataclasses.replace(env_spec, num_envs=1, parallel=False, seed=None))
    try:
        return PolicyIO.from_env(env)
    finally:
        close_env(env)


def _checkpoint_env(path: Path, metadata: dict[str, Any]) -> EnvSpec:
    """The environment a checkpoint records (:func:`workbench.checkpoints.recorded_env`)."""
    from .checkpoints import recorded_env

    fields = recorded_env(metadata)
    if fields is None:
        raise ConfigError(
            f"Session: 'env_spec' is None and the checkpoint {str(path)!r} records no environment "
            f"(its metadata has {sorted(metadata)}); pass env_spec=EnvSpec(...)."
        )
    return EnvSpec.from_dict(fields)


def _provenance(session: Session) -> dict[str, Any]:
    """What made this run: a :func:`workbench.provenance.record` of the session's state (JSON-able)."""
    from .provenance import checkpoint_identity, describe_module, record

    meta = record(
        env=session.env_spec.env_id,
        env_spec=session.env_spec.to_dict(),
        policy=session.policy_spec.to_dict(),
        policy_io=session.io.to_dict(),
        checkpoint=None if session.checkpoint is None else checkpoint_identity(session.checkpoint),
        device=str(session.device),
        seeds={"env": session.env_spec.seed, "policy": session.policy_spec.seed, "rollout": session.seed},
    )
    modules = recurrent_modules(session.policy)
    meta["module"] = describe_module(modules[0]) if modules else None
    if session.trajectory is not None:
        meta.update(seed=session.seed, steps=int(session.trajectory.batch_size[1]),
                    num_envs=int(session.trajectory.batch_size[0]))
    return meta


class Session:
    """One run: the sizes (read once), the policy (built once), the environment, the trajectory,
    the diagnostics report, the probes and the provenance.

    Args:
        env_spec: the environment; ``None`` with a ``checkpoint`` uses the one it records.
        policy_spec: the policy to build (exactly one of ``policy_spec`` and ``checkpoint``).

    Keyword Args:
        checkpoint: a file from :func:`~workbench.checkpoints.save_checkpoint` (or :meth:`save_checkpoint`);
            its sizes come from the file, so no environment is made until the rollout.
        device: where the policy runs: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.

    Attributes:
        io, policy: the sizes and the policy, from the start.
        trajectory, report, probes: ``None`` until :meth:`rollout`, :meth:`diagnose`, :meth:`probe`
            (a new rollout clears the report and the probes).
        wiring: the findings of the one wiring check, made before the first rollout.

    Raises:
        ConfigError: a bad argument (the message names it).

    Examples:
        >>> Session(EnvSpec(), PolicySpec(), checkpoint="policy.pt")
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: Session: pass exactly one of 'policy_spec' and 'checkpoint'; got both.
    """

    def __init__(self, env_spec: EnvSpec | None = None, policy_spec: PolicySpec | None = None, *,
                 checkpoint: str | os.PathLike | None = None, device: str | torch.device = "auto") -> None:
        if (policy_spec is None) == (checkpoint is None):
            got = "neither" if policy_spec is None else "both"
            raise ConfigError(f"Session: pass exactly one of 'policy_spec' and 'checkpoint'; got {got}.")
        if env_spec is not None and not isinstance(env_spec, EnvSpec):
            raise ConfigError(f"Session: 'env_spec' must be an EnvSpec or None; got {type(env_spec).__name__}.")
        if env_spec is None and checkpoint is None:
            raise ConfigError("Session: 'env_spec' is needed with a 'policy_spec' (only a checkpoint records one).")
        if policy_spec is not None and not isinstance(policy_spec, PolicySpec):
            raise ConfigError(f"Session: 'policy_spec' must be a PolicySpec; got {type(policy_spec).__name__}.")
        self.device = resolve_device(device)
        self.checkpoint: Path | None = None
        if checkpoint is not None:
            from .checkpoints import checkpoint_metadata

            self.checkpoint = Path(checkpoint)
            self.policy, policy_spec = load_checkpoint(self.checkpoint, device=self.device)
            self.io = policy_spec_of(self.policy)[1]
            if env_spec is None:
                env_spec = _checkpoint_env(self.checkpoint, checkpoint_metadata(self.checkpoint))
        else:
            self.io = policy_io(env_spec)
            self.policy = build_policy(policy_spec, self.io, device=self.device)
        self._start(env_spec, policy_spec)

    @classmethod
    def of_policy(cls, env_spec: EnvSpec, policy, *, device: str | torch.device = "auto",
                  checkpoint: str | os.PathLike | None = None) -> Session:
        """A session around a policy built elsewhere (a panel, a notebook), with its own specs and sizes.

        ``checkpoint``: the file the policy was loaded from, if any (for the provenance).

        Examples:
            >>> env_spec = EnvSpec("CartPole-v1", max_steps=10)
            >>> policy = build_policy(PolicySpec(hidden_size=8), policy_io(env_spec), device="cpu")
            >>> with Session.of_policy(env_spec, policy, device="cpu") as session:
            ...     _ = session.rollout(12, seed=0, progress=False)
            >>> session.trajectory.batch_size, session.policy is policy
            (torch.Size([1, 12]), True)
        """
        built = policy_spec_of(policy)
        if built is None:
            raise ConfigError(
                "Session.of_policy: 'policy' must come from workbench.policy.build_policy or load_checkpoint "
                f"(its spec and sizes are needed); got a {type(policy).__name__} built elsewhere."
            )
        if not isinstance(env_spec, EnvSpec):
            raise ConfigError(f"Session.of_policy: 'env_spec' must be an EnvSpec; got {type(env_spec).__name__}.")
        self = cls.__new__(cls)
        self.device = resolve_device(device)
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.policy, self.io = policy, built[1]
        self._start(env_spec, built[0])
        return self

    def _start(self, env_spec: EnvSpec, policy_spec: PolicySpec) -> None:
        self.env_spec: EnvSpec = env_spec
        self.policy_spec: PolicySpec = policy_spec
        self.wiring = None
        self.trajectory: TensorDictBase | None = None
        self.report = None
        self.probes: dict | None = None
        self.seed: int | None = None
        self._env = None
        self._env_closed = False

    # ------------------------------------------------------------------ the environment
    @property
    def env(self):
        """The environment, wired for the policy (made on first use; again after :meth:`close`)."""
        if self._env is None:
            from .wiring import check_env_fits

            env = make_env(self.env_spec, self.policy)
            try:
                check_env_fits(self.io, PolicyIO.from_env(env), self.env_spec.env_id)
            except BaseException:
                close_env(env)
                raise
            self._env, self._env_closed = env, False
        return self._env

    def close(self) -> None:
        """Closes the environment (and its worker processes); the rest of the session stays."""
        if self._env is not None:
            env, self._env, self._env_closed = self._env, None, True
            close_env(env)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the run
    def rollout(self, steps: int, *, seed: int | None = None, progress: bool = True, deterministic: bool = False,
                worker_timeout: float = WORKER_TIMEOUT_S, metadata: dict[str, Any] | None = None,
                storage: str = "memory", memmap_folder: str | os.PathLike | None = None,
                cancel=None, on_progress=None) -> TensorDictBase:
        """Rolls the policy out (see :func:`workbench.rollout.rollout`, which documents ``storage``,
        ``memmap_folder``, ``cancel`` and ``on_progress``) and stores ``.trajectory``.

        The first call checks the wiring (:func:`~workbench.wiring.check_wiring`, strict) and
        keeps its findings in ``.wiring``; :meth:`diagnose` reuses them. On any error, and on a
        Cancel (:class:`~workbench.errors.Cancelled`, whose ``partial`` is the trajectory of the
        steps finished), the environment is closed and ``.trajectory`` stays what it was.
        """
        from .wiring import check_wiring
        from .rollout import rollout

        try:
            env = self.env
            if self.wiring is None:
                self.wiring = check_wiring(self.policy, env, strict=True)
            traj = rollout(self.policy, env, steps, seed=seed, progress=progress, deterministic=deterministic,
                           device=self.device, check=False, metadata=metadata, worker_timeout=worker_timeout,
                           storage=storage, memmap_folder=memmap_folder, cancel=cancel, on_progress=on_progress)
        except BaseException:
            self.close()
            raise
        self.trajectory, self.seed, self.report, self.probes = traj, seed, None, None
        return traj

    def _need_trajectory(self, caller: str) -> TensorDictBase:
        if self.trajectory is None:
            raise SessionError(f"Session.{caller}: no trajectory yet; call .rollout(steps) first.")
        return self.trajectory

    def diagnose(self):
        """The diagnostics of the trajectory (reset audit, replay check, and the wiring findings
        kept from the rollout); stores and returns ``.report``."""
        from .diagnostics import diagnose

        self.report = diagnose(self._need_trajectory("diagnose"), self.policy, wiring=self.wiring)
        return self.report

    def replay(self, *, resets: bool = True, deterministic: bool = True) -> TensorDictBase:
        """The policy's outputs when a loss replays the trajectory (:func:`~workbench.replay.replay_policy`)."""
        from .replay import replay_policy

        return replay_policy(self.policy, self._need_trajectory("replay"), resets=resets, deterministic=deterministic)

    def probe(self, target=None, **options: Any) -> dict:
        """Linear probes (:func:`~workbench.probes.probe_suite`); stores and returns ``.probes``.

        ``target=None`` probes the true-state entries the observation hides (all of them when
        nothing is hidden), and gives ``{}`` when the environment reports no true state or no
        episode restarts inside the rollout (a probe needs held-out episodes).
        """
        from .probes import probe_suite

        traj = self._need_trajectory("probe")
        if target is None:
            mask = VELOCITY_MASKS.get(self.env_spec.env_id)
            if mask is None or KEYS.true_state not in traj.keys(True) or not traj.get(KEYS.is_init)[:, 1:].any():
                self.probes = {}
                return self.probes
            hidden = self.env_spec.hide_velocity
            target = tuple(i for i in range(len(mask.names)) if not hidden or i not in mask.keep)
        self.probes = probe_suite(traj, target=target, **options)
        return self.probes

    # ------------------------------------------------------------------ what it made
    @property
    def provenance(self) -> dict[str, Any]:
        """What made this run: versions, env and policy specs, module, checkpoint path + sha256, seeds."""
        return _provenance(self)

    def figures(self) -> dict:
        """``{name: plotly Figure}``: hidden states, PCA, norms, gates (when recorded), the replay
        divergence (after :meth:`diagnose`) and the probes (after :meth:`probe`)."""
        from . import figures

        traj = self._need_trajectory("figures")
        figs = {
            "hidden_heatmap": figures.hidden_heatmap(traj),
            "pca_2d": figures.pca_figure(traj, k=2, color="episode", env=None),
            "pca_3d": figures.pca_figure(traj, k=3, color="time"),
            "hidden_norm": figures.norm_figure(traj, env=None),
        }
        if KEYS.gates in traj.keys(True):
            figs["gates"] = figures.gates_figure(traj)
        if self.report is not None and self.report.replay is not None:
            figs["replay_divergence"] = figures.divergence_figure(self.report.replay)
        if self.probes:
            figs["probe_r2"] = figures.probe_figure(self.probes)
        return figs

    def export(self, folder: str | os.PathLike, formats: Sequence[str] = ("html",)) -> list[Path]:
        """Writes :meth:`figures`, the trajectory (``trajectory.pt``) and the report
        (``diagnostics.txt``, after :meth:`diagnose`) into ``folder``, each with the provenance.

        Returns:
            The paths written: figures first, then the trajectory and the report.
        """
        from .export import check_formats, export_figures, prepare_folder, write_file
        from .rollout import save_trajectory

        traj = self._need_trajectory("export")
        formats = check_formats(formats, ("html",))
        out = prepare_folder(Path(folder))
        meta = self.provenance
        paths = export_figures(self.figures(), out, formats, metadata=meta)
        paths.append(save_trajectory(traj, out / "trajectory.pt", metadata=meta))
        if self.report is not None:
            paths.append(write_file(out / "diagnostics.txt", (self.report.summary() + "\n").encode()))
        return paths

    def save_checkpoint(self, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None) -> Path:
        """Saves the policy with its environment (``Session(checkpoint=path)`` rebuilds both)."""
        from .checkpoints import save_checkpoint

        meta = {"env_id": self.env_spec.env_id, "env": self.env_spec.to_dict(), **(metadata or {})}
        return save_checkpoint(self.policy, self.policy_spec, path, io=self.io, metadata=meta)

    def __repr__(self) -> str:
        spec = self.policy_spec
        source = f"from {self.checkpoint}" if self.checkpoint is not None else "built"
        env = "open" if self._env is not None else "closed" if self._env_closed else "not made"
        if self.wiring is None:
            wiring = "not checked"
        else:
            bad = [f.severity for f in self.wiring if f.severity in ("error", "warning")]
            wiring = f"{len(bad)} warning(s)" if bad else "ok"
        traj = "none" if self.trajectory is None else str(list(self.trajectory.batch_size))
        report = "none" if self.report is None else (
            f"{len(self.report.errors)} errors, {len(self.report.warnings)} warnings")
        probes = "" if self.probes is None else f"; probes: {len(self.probes)}"
        hidden = " (velocities hidden)" if self.env_spec.hide_velocity else ""
        return (f"Session({self.env_spec.env_id}{hidden}, GRU {spec.hidden_size} × {spec.num_layers} {source}, "
                f"{self.device}; env: {env}; wiring: {wiring}; trajectory: {traj}; report: {report}{probes})")
