"""Recurrent PPO on torchrl: :class:`TrainConfig` → :func:`train`; :func:`evaluate`.

The actor is :func:`workbench.policy.build_policy`'s ``ProbabilisticActor``
(``GRUModule → MLPHead``); the critic has its own GRU (hidden key
``"critic_state"``) and MLP writing ``"state_value"``. Both run during
collection (so both hidden states are carried and stored), and both are
replayed in recurrent mode:

- a torchrl ``Collector`` steps ``num_envs`` environments from
  :func:`workbench.envs.make_env` (with both primers) for ``frames_per_batch``
  frames: a batch ``[num_envs, T]``;
- ``GAE(..., deactivate_vmap=True, shifted=False)`` computes the advantage
  inside ``set_recurrent_mode(True)`` (the cuDNN GRU is not vmap-able, and an
  unshifted estimator feeds the critic the stored hidden states);
- ``ClipPPOLoss`` (which enters recurrent mode itself) is replayed for
  ``epochs`` epochs on minibatches of whole ``[envs, T]`` rows, so every
  trajectory segment keeps its time order and its ``is_init`` resets;
- Adam with gradient clipping; a ``tqdm`` bar shows the mean episode return.

Examples:
    >>> cfg = TrainConfig(env_id="workbench/CueMemory-v0", total_frames=64, num_envs=2,
    ...                   frames_per_batch=32, epochs=1, progress=False)
    >>> history = train(cfg)
    >>> history[-1]["frames"], "mean_return" in history[-1]
    (64, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .episodes import RunningReturns
from .errors import ConfigError, EnvMismatchError, OutputPathError
from .keys import KEYS

__all__ = ["TrainConfig", "TrainingInterrupted", "train", "evaluate", "build_critic", "DEFAULTS"]

CRITIC_HIDDEN = "critic_state"
"""the critic GRU's hidden-state key"""


@dataclass(frozen=True)
class TrainConfig:
    """What :func:`train` does; CPU-friendly defaults (about 3e5 frames, 2-3 minutes on 2 CPU cores, for CartPole without velocities).

    Every field is checked when the config is made, so a bad value fails before any work:

    Examples:
        >>> TrainConfig(total_frames=-10)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: TrainConfig: 'total_frames': expected an integer >= 1; got -10
        >>> TrainConfig(num_envs=8, frames_per_batch=100)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: TrainConfig: 'frames_per_batch': expected a multiple of 'num_envs' (8); got 100
    """

    env_id: str = "workbench/CartPoleNoVel-v1"
    total_frames: int = 307_200
    num_envs: int = 8
    frames_per_batch: int = 512
    """frames per collected batch: ``num_envs × T``"""
    epochs: int = 10
    minibatches: int = 1
    """minibatches per epoch, split along the environments (whole rows)"""
    hidden_size: int = 64
    head_cells: tuple[int, ...] = (64,)
    lr: float = 1e-3
    anneal_lr: bool = True
    gamma: float = 0.98
    lmbda: float = 0.8
    clip_epsilon: float = 0.2
    entropy_coeff: float = 0.0
    critic_coeff: float = 0.5
    reward_scale: float = 0.1
    """rewards are multiplied by this before the advantage (returns are reported unscaled)"""
    max_grad_norm: float = 0.5
    keep_best: bool = False
    """save the actor with the best mean return over the last ``best_window`` training episodes, not the last one"""
    best_window: int = 20
    seed: int = 0
    max_steps: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("total_frames", "num_envs", "frames_per_batch", "epochs", "minibatches", "hidden_size",
                     "best_window"):
            _check_number(name, getattr(self, name), int, low=1)
        _check_number("seed", self.seed, int, low=0)
        if self.max_steps is not None:
            _check_number("max_steps", self.max_steps, int, low=1)
        cells = tuple(self.head_cells) if isinstance(self.head_cells, (list, tuple)) else self.head_cells
        if not isinstance(cells, tuple) or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in cells):
            raise ConfigError(f"TrainConfig: 'head_cells': expected a tuple of ints >= 1, e.g. (64,); "
                              f"got {self.head_cells!r}")
        object.__setattr__(self, "head_cells", cells)
        for name in ("lr", "clip_epsilon", "max_grad_norm", "reward_scale"):
            _check_number(name, getattr(self, name), float, low=0.0, low_open=True)
        for name in ("entropy_coeff", "critic_coeff"):
            _check_number(name, getattr(self, name), float, low=0.0)
        _check_number("gamma", self.gamma, float, low=0.0, high=1.0, low_open=True)
        _check_number("lmbda", self.lmbda, float, low=0.0, high=1.0)
        for name in ("anneal_lr", "keep_best", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TrainConfig: '{name}': expected a bool; got {getattr(self, name)!r}")
        if self.frames_per_batch % self.num_envs:
            raise ConfigError(
                f"TrainConfig: 'frames_per_batch': expected a multiple of 'num_envs' ({self.num_envs}); "
                f"got {self.frames_per_batch}"
            )
        if self.num_envs % self.minibatches:
            raise ConfigError(
                f"TrainConfig: 'minibatches': expected a divisor of 'num_envs' ({self.num_envs}); got {self.minibatches}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["head_cells"] = list(self.head_cells)
        return data


def _check_number(name: str, value: Any, kind: type, *, low: float, high: float | None = None,
                  low_open: bool = False) -> None:
    """Raises :class:`ConfigError` unless ``value`` is a finite ``kind`` in ``[low, high]`` (``(low, ...`` if ``low_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float))
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    ok = ok and (high is None or value <= high)
    if not ok:
        what = "an integer" if kind is int else "a finite number"
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        if high is not None:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigError(f"TrainConfig: '{name}': expected {what} {bound}; got {value!r}")


DEFAULTS: dict[str, dict[str, Any]] = {
    "workbench/CueMemory-v0": dict(total_frames=28_800, hidden_size=32, head_cells=(32,), frames_per_batch=576,
                                   gamma=0.99, lmbda=0.95, entropy_coeff=0.01, lr=1e-3, epochs=8,
                                   reward_scale=1.0),
    "workbench/PendulumNoVel-v1": dict(total_frames=200_000, num_envs=4, frames_per_batch=512, gamma=0.9,
                                       lmbda=0.95, reward_scale=0.1, lr=3e-4),
}
"""Per-environment defaults over :class:`TrainConfig`'s, used by the ``train`` command."""


def build_critic(env, hidden_size: int, head_cells=(64,), *, seed: int = 0):
    """A recurrent critic: its own ``GRUModule`` (``KEYS.observation``, ``"critic_state"``) → MLP → ``"state_value"``."""
    from tensordict.nn import TensorDictSequential
    from torchrl.modules import MLP

    from .gru import GRUModule
    from .policy import MLPHead, PolicyIO

    io = env if hasattr(env, "observation_size") else PolicyIO.from_env(env)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 10_000)
        gru = GRUModule(io.observation_size, hidden_size, in_keys=[KEYS.observation, CRITIC_HIDDEN],
                        out_keys=["critic_features", ("next", CRITIC_HIDDEN)])
        mlp = MLP(in_features=hidden_size, out_features=1, num_cells=list(head_cells), activation_class=torch.nn.Tanh)
    return TensorDictSequential(gru, MLPHead(mlp, "critic_features", ["state_value"]))


def _config_for(env_id: str, **overrides) -> TrainConfig:
    base = dict(DEFAULTS.get(env_id, {}))
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(env_id=env_id, **base)


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Trains a recurrent PPO agent; returns the history (one dict per batch) and saves ``out`` if given.

    Args:
        config: the run.
        out: the checkpoint to write (:func:`workbench.policy.save_checkpoint`,
            with the environment and config in its metadata).

    Keyword Args:
        callback: called with each history row as it is made (e.g. to draw a
            live reward curve in a notebook).

    Returns:
        History rows: ``frames``, ``mean_return`` (of the episodes that ended
        in this batch; NaN if none), ``episodes``, ``loss_objective``,
        ``loss_critic``, ``entropy``, ``lr``, ``seconds``.
    """
    from tensordict.nn import TensorDictSequential
    from torchrl.collectors import Collector
    from torchrl.envs.utils import ExplorationType
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE
    from tqdm.auto import tqdm

    from .envs import EnvSpec, make_env
    from .files import check_output_path, save_or_fallback
    from .gru import set_recurrent_mode
    from .policy import PolicySpec, build_policy, save_checkpoint

    if out is not None:
        check_output_path(out, what="out")  # a path that cannot be written fails now, not after training

    torch.manual_seed(config.seed)
    env_spec = EnvSpec(config.env_id, num_envs=config.num_envs, seed=config.seed, max_steps=config.max_steps)
    probe_env = make_env(replace(env_spec, num_envs=1))
    policy_spec = PolicySpec(hidden_size=config.hidden_size, head_cells=tuple(config.head_cells), seed=config.seed)
    actor = build_policy(policy_spec, probe_env, device="cpu")
    critic = build_critic(probe_env, config.hidden_size, config.head_cells, seed=config.seed)
    probe_env.close()
    collect_policy = TensorDictSequential(actor, critic)
    env = make_env(env_spec, collect_policy)

    collector = Collector(
        env, collect_policy, frames_per_batch=config.frames_per_batch, total_frames=config.total_frames,
        exploration_type=ExplorationType.RANDOM, auto_register_policy_transforms=False,
    )
    advantage = GAE(gamma=config.gamma, lmbda=config.lmbda, value_network=critic, average_gae=False,
                    deactivate_vmap=True, shifted=False)
    loss_module = ClipPPOLoss(actor, critic, clip_epsilon=config.clip_epsilon, entropy_bonus=config.entropy_coeff > 0,
                              entropy_coeff=config.entropy_coeff or None, critic_coeff=config.critic_coeff,
                              loss_critic_type="smooth_l1", normalize_advantage=True)
    params = list(actor.parameters()) + list(critic.parameters())
    optim = torch.optim.Adam(params, lr=config.lr)
    batches = max(1, math.ceil(config.total_frames / config.frames_per_batch))

    history: list[dict[str, Any]] = []
    running = RunningReturns(config.num_envs)  # returns of the episodes in progress
    recent_returns: list[float] = []
    best = {"mean_return": -math.inf, "frames": 0, "state_dict": None}
    start = time.perf_counter()
    frames = 0
    finished_state = None
    interrupted = False
    bar = tqdm(total=config.total_frames, desc="train", unit="frame", disable=not config.progress)
    try:
        for i, data in enumerate(collector):
            data = data.reshape(config.num_envs, -1) if data.ndim == 1 else data
            frames += data.numel()
            data = data.exclude("state_value", "critic_features")  # recomputed by the estimator
            # the returns of the episodes that ended in this batch
            finished = [r for _, r in running.update(data[KEYS.reward], data[KEYS.done])]
            # the best policy so far: judged on the episodes it (the weights before this update) just finished
            recent_returns = (recent_returns + finished)[-config.best_window:]
            window_mean = math.nan
            if finished and len(recent_returns) >= config.best_window:
                window_mean = sum(recent_returns) / len(recent_returns)
                if config.keep_best and window_mean >= best["mean_return"]:
                    best = {"mean_return": window_mean, "frames": frames,
                            "state_dict": {k: v.detach().clone() for k, v in actor.state_dict().items()}}
            if config.reward_scale != 1.0:
                data.set(KEYS.reward, data[KEYS.reward] * config.reward_scale)
            if config.anneal_lr:
                for group in optim.param_groups:
                    group["lr"] = config.lr * (1.0 - i / batches)
            sums: dict[str, float] = {}
            count = 0
            for _ in range(config.epochs):
                with torch.no_grad(), set_recurrent_mode(True):
                    advantage(data)
                order = torch.randperm(config.num_envs)
                for chunk in order.chunk(config.minibatches):
                    losses = loss_module(data[chunk])
                    total = losses["loss_objective"] + losses["loss_critic"]
                    if "loss_entropy" in losses.keys():
                        total = total + losses["loss_entropy"]
                    optim.zero_grad()
                    total.backward()
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    optim.step()
                    for key in ("loss_objective", "loss_critic", "entropy"):
                        if key in losses.keys():
                            sums[key] = sums.get(key, 0.0) + float(losses[key].detach().mean())
                    count += 1
            collector.update_policy_weights_()
            row = {
                "frames": frames,
                "mean_return": float(sum(finished) / len(finished)) if finished else float("nan"),
                "episodes": len(finished),
                "window_return": window_mean,
                **{k: v / max(count, 1) for k, v in sums.items()},
                "lr": optim.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            if out is not None:  # what an interrupt saves: the weights after the last finished update
                finished_state = {k: v.detach().clone() for k, v in actor.state_dict().items()}
            if callback is not None:
                callback(row)
            recent = [h["mean_return"] for h in history[-10:] if not math.isnan(h["mean_return"])]
            bar.set_postfix(mean_return=f"{sum(recent) / len(recent):.1f}" if recent else "-")
            bar.update(data.numel())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        collector.shutdown()  # closes env too
    done_frames = history[-1]["frames"] if history else 0
    if interrupted and finished_state is not None:
        actor.load_state_dict(finished_state)
    if config.keep_best and best["state_dict"] is not None:
        actor.load_state_dict(best["state_dict"])
    written, failure = None, None
    if out is not None and (history or not interrupted):
        metadata = {
            "best_window_return": best["mean_return"] if best["state_dict"] is not None else None,
            "best_frames": best["frames"] if best["state_dict"] is not None else None,
            "env_id": config.env_id, "train_config": config.to_dict(), "frames": done_frames,
            "seconds": round(time.perf_counter() - start, 1),
            "final_mean_return": next((h["mean_return"] for h in reversed(history)
                                       if not math.isnan(h["mean_return"])), None),
            "interrupted": interrupted,
        }
        target = _partial_path(out) if interrupted else out
        written, failure = save_or_fallback(
            lambda path: save_checkpoint(actor, policy_spec, path, metadata=metadata), target)
    if interrupted:
        raise TrainingInterrupted(done_frames, config.total_frames, written, out, failure)
    if failure is not None:
        raise OutputPathError(
            f"out: could not write the checkpoint to {str(out)!r} ({failure.strerror or failure}); "
            f"saved it to {str(written)!r} instead"
        )
    return history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`: how far it got and where the last finished weights went (None: nowhere)."""

    def __init__(self, frames: int, total_frames: int, checkpoint: Path | None, out=None,
                 failure: OSError | None = None) -> None:
        self.frames, self.total_frames, self.checkpoint = frames, total_frames, checkpoint
        if checkpoint is None:
            saved = "no checkpoint written" + (" (no batch had finished)" if out is not None else "")
        else:
            saved = f"wrote the weights after {frames} frames to {str(checkpoint)!r}"
            if failure is not None:
                saved += f" (could not write next to {str(out)!r}: {failure.strerror or failure})"
            saved += f", not to {str(out)!r}"
        super().__init__(f"interrupted after {frames} of {total_frames} frames; {saved}")


def _partial_path(out: str | Path) -> Path:
    """``ckpt.pt`` → ``ckpt.partial.pt`` beside it (``ckpt.partial-2.pt``, ... when taken): never a user's file."""
    out = Path(out)
    stem, suffix = (out.stem, out.suffix) if out.suffix else (out.name, "")
    candidate, n = out.with_name(f"{stem}.partial{suffix}"), 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = out.with_name(f"{stem}.partial-{n}{suffix}")
    return candidate


def evaluate(policy, env_id: str, episodes: int = 20, *, seed: int = 1000, deterministic: bool = True,
             max_steps: int | None = None, num_envs: int | None = None) -> list[float]:
    """Returns of ``episodes`` complete episodes of ``policy`` in ``env_id`` (greedy actions by default).

    Raises :class:`~workbench.errors.EnvMismatchError` before running when the
    environment's observation size or action space differs from the policy's.
    """
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from .envs import EnvSpec, make_env
    from .policy import PolicyIO, policy_spec_of

    n = num_envs or min(episodes, 10)
    env = make_env(EnvSpec(env_id, num_envs=n, seed=seed, max_steps=max_steps), policy)
    built = policy_spec_of(policy)
    if built is not None:
        try:
            check_env_fits(built[1], PolicyIO.from_env(env), env_id)
        except BaseException:
            env.close()
            raise
    returns: list[float] = []
    running = RunningReturns(n)
    quota = math.ceil(episodes / n)
    counts = [0] * n
    kind = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    try:
        with torch.no_grad(), set_exploration_type(kind):
            td = env.reset()
            while min(counts) < quota:
                td = policy(td)
                td, nxt = env.step_and_maybe_reset(td)
                for e, episode_return in running.update(td[KEYS.reward], td[KEYS.done]):
                    if counts[e] < quota:  # the same number of episodes from each env: no bias to short ones
                        returns.append(episode_return)
                        counts[e] += 1
                td = nxt
    finally:
        env.close()
    return returns[:episodes]


def _describe_io(io) -> str:
    """``io``'s observation size and action space in words."""
    if io.action_kind == "continuous":
        bounds = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(io.action_low, io.action_high))
        action = f"a continuous action of {io.action_size} dim(s) in {bounds}"
    else:
        action = f"{io.action_size} discrete actions ({io.action_kind})"
    return f"observation size {io.observation_size} and {action}"


def check_env_fits(expected, found, env_id: str) -> None:
    """Raises :class:`~workbench.errors.EnvMismatchError` unless the ``found`` PolicyIO of ``env_id`` is ``expected``.

    Examples:
        >>> from workbench.policy import PolicyIO
        >>> check_env_fits(PolicyIO(4, "categorical", 2), PolicyIO(2, "categorical", 3), "MountainCar-v0")
        Traceback (most recent call last):
        ...
        workbench.errors.EnvMismatchError: 'MountainCar-v0' does not fit the policy: expected observation size 4 and 2 discrete actions (categorical); found observation size 2 and 3 discrete actions (categorical)
    """
    if expected != found:
        raise EnvMismatchError(
            f"{env_id!r} does not fit the policy: expected {_describe_io(expected)}; found {_describe_io(found)}"
        )
