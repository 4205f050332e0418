"""Recurrent PPO on torchrl: :class:`TrainConfig` → :func:`train`; :func:`evaluate`.

The actor is :func:`workbench.policy.build_policy`'s ``ProbabilisticActor``
(``GRUModule → MLPHead``); the critic has its own GRU (hidden key
``"critic_state"``) and MLP writing ``"state_value"``. Both run during
collection (so both hidden states are carried and stored), and both are
replayed in recurrent mode. :func:`train` is a loop over three parts:

- collection (:func:`workbench.ppo.make_collector`): a torchrl ``Collector``
  steps ``num_envs`` environments from :func:`workbench.ppo.make_train_env` (one
  vector env, with both primers) for ``frames_per_batch`` frames: a batch ``[num_envs, T]``;
- the update (:class:`workbench.ppo.PPOUpdate`): GAE in recurrent mode, then
  ``ClipPPOLoss`` for ``epochs`` epochs on minibatches of whole rows; Adam
  with gradient clipping;
- the books (:class:`Bookkeeper`): frames, seconds, episode returns, the
  history rows and callbacks, a ``tqdm`` bar with the mean episode return,
  the best and last weights, and the checkpoint;
- with ``eval_every``, greedy evaluations (:class:`GreedyEvaluation`); with
  ``solve_return``, training stops at the first that reaches it.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .episodes import RunningReturns
from .jobs import CancelToken, Progress, report
from .errors import Cancelled, ConfigError, OutputPathError
from .keys import KEYS
from .specs import EXPECTED, Spec, setting
from .wiring import check_env_fits

__all__ = ["TrainConfig", "TrainingInterrupted", "Bookkeeper", "GreedyEvaluation", "train", "evaluate", "DEFAULTS"]


@dataclass(frozen=True)
class TrainConfig(Spec):
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

    WORDING = EXPECTED

    env_id: str = setting("workbench/CartPoleNoVel-v1", "the gymnasium id to train on", label="environment")
    total_frames: int = setting(307_200, "frames to collect in all", low=1)
    num_envs: int = setting(8, "environments stepped together", low=1)
    frames_per_batch: int = setting(512, "frames per collected batch: ``num_envs × T``", low=1)
    epochs: int = setting(10, "PPO epochs per batch", low=1)
    minibatches: int = setting(1, "minibatches per epoch, split along the environments (whole rows)", low=1)
    hidden_size: int = setting(64, "features of the actor's and the critic's GRU", low=1)
    head_cells: tuple[int, ...] = setting((64,), "hidden layer sizes of the MLP heads", low=1)
    lr: float = setting(1e-3, "Adam's learning rate", low=0.0, low_open=True)
    anneal_lr: bool = setting(True, "decay the learning rate linearly to 0 over the run")
    gamma: float = setting(0.98, "discount", low=0.0, high=1.0, low_open=True)
    lmbda: float = setting(0.8, "GAE's lambda", low=0.0, high=1.0)
    clip_epsilon: float = setting(0.2, "PPO's clip range", low=0.0, low_open=True)
    entropy_coeff: float = setting(0.0, "weight of the entropy bonus", low=0.0)
    critic_coeff: float = setting(0.5, "weight of the critic's loss", low=0.0)
    reward_scale: float = setting(
        0.1, "rewards are multiplied by this before the advantage (returns are reported unscaled)", low=0.0,
        low_open=True)
    max_grad_norm: float = setting(0.5, "gradient clipping norm", low=0.0, low_open=True)
    keep_best: bool = setting(
        False, "save the actor with the best mean return over the last ``best_window`` training episodes, "
        "not the last one")
    best_window: int = setting(20, "training episodes in the ``keep_best`` average", low=1)
    seed: int = setting(0, "seed of the weights, the environments and the sampling", low=0)
    max_steps: int | None = setting(None, "truncate episodes after this many steps; None: the env's own limit",
                                    kind="int", low=1, optional=True)
    delay: int | None = setting(
        None, "the task's memory length, for tasks with that knob (``workbench/CueMemory-v0``); None: its default",
        kind="int", low=1, optional=True)
    solve_return: float | None = setting(
        None, "stop at the first greedy evaluation whose mean return reaches this; None: train all the frames",
        kind="float", optional=True)
    eval_every: int = setting(
        0, "frames between greedy evaluations (after the batch that reaches each multiple, and after the last "
        "batch); 0: none", low=0)
    eval_episodes: int = setting(20, "episodes of each greedy evaluation (one per environment, run side by side)",
                                 low=1)
    collectors: int = setting(0, "remote collectors on Ray (a divisor of ``num_envs``); 0: collect in this process",
                              low=0)
    progress: bool = setting(True, "show a progress bar")

    def env_spec(self, **changes):
        """The :class:`~workbench.envs.EnvSpec` this run trains on (``changes`` replace its fields).

        Examples:
            >>> TrainConfig(env_id="workbench/CueMemory-v0", delay=16, num_envs=2).env_spec().delay
            16
        """
        from .envs import EnvSpec

        fields = dict(env_id=self.env_id, num_envs=self.num_envs, seed=self.seed, max_steps=self.max_steps,
                      delay=self.delay)
        return EnvSpec(**{**fields, **changes})

    def _check(self) -> None:
        if self.delay is not None:  # EnvSpec says which environments take a delay
            try:
                self.env_spec(num_envs=1)
            except ConfigError as error:
                raise ConfigError(f"TrainConfig: {str(error).removeprefix('EnvSpec: ')}") from None
        if self.frames_per_batch % self.num_envs:
            raise ConfigError(
                f"TrainConfig: 'frames_per_batch': expected a multiple of 'num_envs' ({self.num_envs}); "
                f"got {self.frames_per_batch}"
            )
        if self.solve_return is not None and self.eval_every == 0:
            raise ConfigError(
                f"TrainConfig: 'eval_every': expected frames between evaluations (>= 1) when 'solve_return' is set "
                f"({self.solve_return}); got 0"
            )
        if self.collectors and self.num_envs % self.collectors:
            raise ConfigError(
                f"TrainConfig: 'collectors': expected a divisor of 'num_envs' ({self.num_envs}); got {self.collectors}"
            )
        if self.num_envs % self.minibatches:
            raise ConfigError(
                f"TrainConfig: 'minibatches': expected a divisor of 'num_envs' ({self.num_envs}); got {self.minibatches}"
            )


DEFAULTS: dict[str, dict[str, Any]] = {
    # to greedy 475 over 20 episodes (the task's reward threshold); total_frames is a cap
    "workbench/CartPoleNoVel-v1": dict(total_frames=204_800, num_envs=16, frames_per_batch=1024, epochs=8,
                                       minibatches=2, solve_return=475.0, eval_every=8192, eval_episodes=20),
    # to 95 % correct decisions (returns are +1/-1: a mean of 0.9) over 20 greedy episodes; total_frames is a cap
    "workbench/CueMemory-v0": dict(total_frames=28_800, hidden_size=32, head_cells=(32,), frames_per_batch=576,
                                   gamma=0.99, lmbda=0.95, entropy_coeff=0.01, lr=1e-3, epochs=8,
                                   reward_scale=1.0, solve_return=0.9, eval_every=576, eval_episodes=20),
    "workbench/PendulumNoVel-v1": dict(total_frames=200_000, num_envs=4, frames_per_batch=512, gamma=0.9,
                                       lmbda=0.95, reward_scale=0.1, lr=3e-4),
}
"""Per-environment defaults over :class:`TrainConfig`'s, used by the ``train`` command."""


def _config_for(env_id: str, **overrides) -> TrainConfig:
    base = dict(DEFAULTS.get(env_id, {}))
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(env_id=env_id, **base)


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Trains a recurrent PPO agent; returns the history (one dict per batch) and saves ``out`` if given.

    Args:
        config: the run.
        out: the checkpoint to write (:func:`workbench.checkpoints.save_checkpoint`,
            with the environment and config in its metadata).

    Keyword Args:
        callback: called with each history row as it is made (e.g. to draw a
            live reward curve in a notebook).
        cancel: a :class:`~workbench.jobs.CancelToken`, checked between batches and
            between the PPO epochs of a batch (a batch stopped inside its update does not count).
        on_progress: ``on_progress(frames, total_frames)`` after each batch's update.
        address: with ``config.collectors``: the Ray cluster to collect on; None: a local Ray started here
            (:func:`workbench.distributed.make_ray_collector`).

    Returns:
        History rows: ``frames``, ``mean_return`` (of the episodes that ended
        in this batch; NaN if none), ``episodes``, ``loss_objective``,
        ``loss_critic``, ``entropy``, ``lr``, ``seconds``, ``eval_return``
        (the mean return of the greedy evaluation after this batch's update,
        :class:`GreedyEvaluation`; NaN when none ran) and ``solved`` (that
        evaluation reached ``config.solve_return``: training stopped there,
        and those weights are the ones returned and saved).

    Raises:
        TrainingInterrupted: on Ctrl-C, after writing the weights of the last
            finished batch next to ``out`` (never to ``out`` itself).
        Cancelled: ``cancel`` was set before the last batch: as on Ctrl-C the weights of the last
            finished batch are written next to ``out`` (its ``checkpoint`` attribute: that path, or
            ``None`` when nothing was written); ``partial`` is the history of the finished batches
            (what ``train`` returns), ``done`` their frames.
    """
    from tensordict.nn import TensorDictSequential

    from ._compat import guard_ray_exit
    from .files import check_output_path
    from .policy import PolicySpec, build_policy
    from .ppo import PPOUpdate, build_critic, collected_batch, make_collector, make_train_env
    from .session import policy_io

    if out is not None:
        check_output_path(out, what="out")  # a path that cannot be written fails now, not after training
    guard_ray_exit()  # an uncaught Ctrl-C still ends a script by SIGINT after torchrl imported Ray

    torch.manual_seed(config.seed)
    env_spec = config.env_spec()
    io = policy_io(env_spec)  # the sizes, read once
    policy_spec = PolicySpec(hidden_size=config.hidden_size, head_cells=tuple(config.head_cells), seed=config.seed)
    actor = build_policy(policy_spec, io, device="cpu")
    critic = build_critic(io, config.hidden_size, config.head_cells, seed=config.seed)
    collect_policy = TensorDictSequential(actor, critic)
    if config.collectors:  # remote collectors on Ray, in a Ray session that the collector's shutdown ends
        from .distributed import make_ray_collector

        collector = make_ray_collector(env_spec, collect_policy, config, address=address)
    else:
        collector = make_collector(make_train_env(env_spec, collect_policy), collect_policy, config)
    update = PPOUpdate(actor, critic, config)

    book: Bookkeeper | None = None
    greedy: GreedyEvaluation | None = None
    interrupted = cancelled = False
    try:  # the books too: a Ctrl-C while their progress bar first draws is an interrupted training
        book = Bookkeeper(config, actor, keep_last=out is not None or cancel is not None, callback=callback)
        if config.eval_every:
            greedy = GreedyEvaluation(actor, config)
        cancelled = cancel is not None and cancel.cancelled
        for i, data in enumerate(() if cancelled else collector):
            data = collected_batch(data, config.num_envs)
            finished, window_mean = book.episodes(data)  # before the update: judged on the weights that played
            losses = update(data, i, cancel=cancel)
            collector.update_policy_weights_()
            eval_return = math.nan
            if greedy is not None and greedy.due(book.frames):
                eval_return = greedy.mean_return(cancel=cancel)
            book.record(data.numel(), finished, window_mean, losses, update.lr, eval_return=eval_return)
            report(on_progress, book.done_frames, config.total_frames)
            if book.solved:
                break
            if cancel is not None and cancel.cancelled and book.done_frames < config.total_frames:
                cancelled = True
                break
    except KeyboardInterrupt:
        interrupted = True
    except Cancelled:  # inside an update or its evaluation: that batch does not count
        cancelled = True
    finally:
        if book is not None:
            book.close()
        if greedy is not None:
            greedy.close()
        collector.shutdown()  # closes env too
    if book is None:  # interrupted while the books were being opened: nothing trained, nothing written
        raise TrainingInterrupted(0, config.total_frames, None, out, None)
    stopped = interrupted or cancelled
    book.restore_weights(stopped)
    written, failure = None, None
    if out is not None and (book.rows or not stopped):
        written, failure = book.save(policy_spec, _partial_path(out) if stopped else out, stopped)
    if interrupted:
        raise TrainingInterrupted(book.done_frames, config.total_frames, written, out, failure)
    if cancelled:
        error = Cancelled("train", done=book.done_frames, total=config.total_frames, unit="frames",
                          partial=book.rows)
        error.checkpoint = written
        raise error
    if failure is not None:
        raise OutputPathError(
            f"out: could not write the checkpoint to {str(out)!r} ({failure.strerror or failure}); "
            f"saved it to {str(written)!r} instead"
        )
    return book.rows


class Bookkeeper:
    """The books of one :func:`train` run: frames, seconds, episode returns, history rows, best and last weights.

    It shows a ``tqdm`` bar (the mean return of the last 10 batches), calls ``callback``
    with each row, and writes the checkpoint with its metadata.

    Args:
        config: the run.
        actor: the policy being trained (its weights are copied, and restored at the end).

    Keyword Args:
        keep_last: keep a copy of the weights after each finished update (what Ctrl-C saves).
        callback: called with each history row.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> book = Bookkeeper(TrainConfig(num_envs=1, frames_per_batch=4, best_window=1, progress=False),
        ...                   torch.nn.Linear(1, 1))
        >>> batch = TensorDict({"next": {"reward": torch.ones(1, 4, 1),
        ...                              "done": torch.tensor([[[False], [True], [False], [True]]])}}, [1, 4])
        >>> book.episodes(batch)
        ([2.0, 2.0], 2.0)
        >>> row = book.record(4, [2.0, 2.0], 2.0, {"loss_objective": 0.5}, lr=1e-3)
        >>> row["frames"], row["mean_return"], row["episodes"], book.done_frames
        (4, 2.0, 2, 4)
        >>> book.close()
    """

    def __init__(self, config: TrainConfig, actor: torch.nn.Module, *, keep_last: bool = False,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        from tqdm.auto import tqdm

        self.config, self.actor, self.keep_last, self.callback = config, actor, keep_last, callback
        self.rows: list[dict[str, Any]] = []
        self.running = RunningReturns(config.num_envs)  # returns of the episodes in progress
        self.recent_returns: list[float] = []
        self.best: dict[str, Any] = {"mean_return": -math.inf, "frames": 0, "state_dict": None}
        self.last_state: dict[str, torch.Tensor] | None = None
        self.frames = 0
        self.solved_at: dict[str, Any] | None = None
        self.start = time.perf_counter()
        self.bar = tqdm(total=config.total_frames, desc="train", unit="frame", disable=not config.progress)

    @property
    def solved(self) -> bool:
        """A greedy evaluation reached ``config.solve_return``."""
        return self.solved_at is not None

    @property
    def done_frames(self) -> int:
        """Frames of the batches whose update finished."""
        return self.rows[-1]["frames"] if self.rows else 0

    def _weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.actor.state_dict().items()}

    def episodes(self, data) -> tuple[list[float], float]:
        """Counts a collected ``[num_envs, T]`` batch: the returns of the episodes that ended in it, and the mean
        of the last ``best_window`` returns (NaN until there are that many); keeps the best weights if asked."""
        config = self.config
        self.frames += data.numel()
        finished = [r for _, r in self.running.update(data[KEYS.reward], data[KEYS.done])]
        # the best policy so far: judged on the episodes it (the weights before this update) just finished
        self.recent_returns = (self.recent_returns + finished)[-config.best_window:]
        window_mean = math.nan
        if finished and len(self.recent_returns) >= config.best_window:
            window_mean = sum(self.recent_returns) / len(self.recent_returns)
            if config.keep_best and window_mean >= self.best["mean_return"]:
                self.best = {"mean_return": window_mean, "frames": self.frames, "state_dict": self._weights()}
        return finished, window_mean

    def record(self, batch_frames: int, finished: list[float], window_mean: float, losses: dict[str, float],
               lr: float, *, eval_return: float = math.nan) -> dict[str, Any]:
        """Adds the history row of a finished update (and of its greedy evaluation, if one ran), calls the
        callback, moves the bar; returns the row."""
        solve = self.config.solve_return
        solved = solve is not None and not math.isnan(eval_return) and eval_return >= solve
        row = {
            "frames": self.frames,
            "mean_return": float(sum(finished) / len(finished)) if finished else float("nan"),
            "episodes": len(finished),
            "window_return": window_mean,
            **losses,
            "lr": lr,
            "seconds": time.perf_counter() - self.start,
            "eval_return": float(eval_return),
            "solved": solved,
        }
        if solved and self.solved_at is None:
            self.solved_at = {"frames": row["frames"], "seconds": row["seconds"], "eval_return": row["eval_return"]}
        self.rows.append(row)
        if self.keep_last:  # what an interrupt saves: the weights after the last finished update
            self.last_state = self._weights()
        if self.callback is not None:
            self.callback(row)
        recent = [h["mean_return"] for h in self.rows[-10:] if not math.isnan(h["mean_return"])]
        evaluated = next((h["eval_return"] for h in reversed(self.rows) if not math.isnan(h["eval_return"])), None)
        postfix = {"mean_return": f"{sum(recent) / len(recent):.1f}" if recent else "-"}
        if evaluated is not None:
            postfix["greedy"] = f"{evaluated:.1f}"
        self.bar.set_postfix(postfix)
        self.bar.update(batch_frames)
        return row

    def close(self) -> None:
        """Closes the progress bar."""
        self.bar.close()

    def restore_weights(self, interrupted: bool) -> None:
        """Puts the weights to keep into the actor: those that solved the task (already there), else the best if
        asked, else after an interrupt the last finished ones."""
        if self.solved:
            return
        if interrupted and self.last_state is not None:
            self.actor.load_state_dict(self.last_state)
        if self.config.keep_best and self.best["state_dict"] is not None:
            self.actor.load_state_dict(self.best["state_dict"])

    def save(self, policy_spec, target: str | Path, interrupted: bool) -> tuple[Path | None, OSError | None]:
        """Writes the actor's checkpoint with the run's metadata to ``target`` (or a fallback): ``(written, failure)``."""
        from .files import save_or_fallback
        from .checkpoints import save_checkpoint

        config, best = self.config, self.best
        metadata = {
            "best_window_return": best["mean_return"] if best["state_dict"] is not None else None,
            "best_frames": best["frames"] if best["state_dict"] is not None else None,
            "env_id": config.env_id, "train_config": config.to_dict(), "frames": self.done_frames,
            "env": {k: v for k, v in [("env_id", config.env_id), ("max_steps", config.max_steps),
                                      ("delay", config.delay)] if v is not None},
            "seconds": round(time.perf_counter() - self.start, 1),
            "final_mean_return": next((h["mean_return"] for h in reversed(self.rows)
                                       if not math.isnan(h["mean_return"])), None),
            "interrupted": interrupted,
            "solve_return": config.solve_return,
            "solved": self.solved,
            "solved_frames": self.solved_at["frames"] if self.solved else None,
            "solved_seconds": round(self.solved_at["seconds"], 1) if self.solved else None,
            "eval_return": next((h["eval_return"] for h in reversed(self.rows) if not math.isnan(h["eval_return"])),
                                None),
        }
        return save_or_fallback(lambda path: save_checkpoint(self.actor, policy_spec, path, metadata=metadata), target)


class GreedyEvaluation:
    """The greedy evaluations of one :func:`train` run: ``config.eval_episodes`` environments side by side, one
    episode each, from the same starts every time (seeds ``EVAL_SEED + config.seed + i``, apart from the training
    environments'); made once and reused.

    Cheaper than calling :func:`evaluate` every time: the environments are built once, in one vector env
    (:func:`workbench.ppo.make_train_env`), and all episodes run in one batch.

    Args:
        actor: the policy being trained (called as it is when evaluated).
        config: the run (``env_id``, ``delay``, ``max_steps``, ``eval_every``, ``eval_episodes``, ``seed``).

    Examples:
        >>> from workbench.policy import PolicySpec, build_policy
        >>> from workbench.session import policy_io
        >>> config = TrainConfig(env_id="workbench/CueMemory-v0", delay=3, eval_every=64, eval_episodes=4,
        ...                      num_envs=2, frames_per_batch=32)
        >>> actor = build_policy(PolicySpec(hidden_size=4), policy_io(config.env_spec()))
        >>> greedy = GreedyEvaluation(actor, config)
        >>> greedy.due(32), greedy.due(64), greedy.due(96), greedy.due(128)
        (False, True, False, True)
        >>> returns = greedy.returns()
        >>> len(returns), set(returns) <= {-1.0, 1.0}, greedy.returns() == returns  # the same starts each time
        (4, True, True)
        >>> greedy.close()
    """

    EVAL_SEED = 1_000_000
    """offset of the evaluation environments' seeds"""

    def __init__(self, actor, config: TrainConfig) -> None:
        from .ppo import make_train_env

        self.actor, self.config = actor, config
        self.seed = self.EVAL_SEED + config.seed
        self.env = make_train_env(config.env_spec(num_envs=config.eval_episodes, seed=self.seed), actor)
        self.evaluated = 0  # multiples of eval_every already evaluated

    def due(self, frames: int) -> bool:
        """Whether an evaluation is due after ``frames`` frames: the first batch past each multiple of
        ``eval_every``, and the last batch (``total_frames``)."""
        reached = frames // self.config.eval_every
        if reached > self.evaluated or frames >= self.config.total_frames:
            self.evaluated = reached
            return True
        return False

    def returns(self, *, cancel: CancelToken | None = None) -> list[float]:
        """The greedy returns of one episode per environment (``cancel`` checked between steps)."""
        from torchrl.envs.utils import ExplorationType, set_exploration_type

        from .jobs import check

        n = self.config.eval_episodes
        total = torch.zeros(n)
        running = torch.ones(n, dtype=torch.bool)
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            self.env.set_seed(self.seed)  # the same starts every time
            td = self.env.reset()
            while running.any():
                check(cancel, "greedy evaluation", done=n - int(running.sum()), total=n, unit="episodes")
                td, nxt = self.env.step_and_maybe_reset(self.actor(td))
                total += td[KEYS.reward].reshape(n) * running
                running &= ~td[KEYS.done].reshape(n)
                td = nxt
        return total.tolist()

    def mean_return(self, *, cancel: CancelToken | None = None) -> float:
        """The mean of :meth:`returns`."""
        returns = self.returns(cancel=cancel)
        return sum(returns) / len(returns)

    def close(self) -> None:
        """Closes the environments."""
        self.env.close()


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
             max_steps: int | None = None, num_envs: int | None = None, delay: int | None = None) -> list[float]:
    """Returns of ``episodes`` complete episodes of ``policy`` in ``env_id`` (greedy actions by default).

    ``max_steps`` and ``delay`` are :class:`~workbench.envs.EnvSpec`'s.

    Raises :class:`~workbench.errors.EnvMismatchError` before running when the
    environment's observation size or action space differs from the policy's.
    """
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from .envs import EnvSpec, make_env
    from .policy import PolicyIO, policy_spec_of

    n = num_envs or min(episodes, 10)
    env = make_env(EnvSpec(env_id, num_envs=n, seed=seed, max_steps=max_steps, delay=delay), policy)
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
