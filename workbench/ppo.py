"""Recurrent PPO's two halves on torchrl: collecting a batch and updating on it.

- :func:`build_critic`: the recurrent critic, its own GRU (hidden key
  ``"critic_state"``) and MLP writing ``"state_value"``;
- :func:`make_collector` / :func:`collected_batch`: a torchrl ``Collector``
  steps ``num_envs`` environments for ``frames_per_batch`` frames, and each
  batch comes out as ``[num_envs, T]`` rows without the critic's outputs
  (the estimator recomputes them);
- :class:`PPOUpdate`: ``GAE(..., deactivate_vmap=True, shifted=False)`` inside
  ``set_recurrent_mode(True)`` (the cuDNN GRU is not vmap-able, and an
  unshifted estimator feeds the critic the stored hidden states), once per
  batch with the critic that collected it (as sb3 and CleanRL do), then
  ``ClipPPOLoss`` for ``epochs`` epochs on minibatches of whole rows, so every
  trajectory segment keeps its time order and its ``is_init`` resets; Adam
  with gradient clipping.

:func:`workbench.train.train` runs them in a loop and keeps the books.

Examples:
    >>> from workbench.policy import PolicyIO
    >>> critic = build_critic(PolicyIO(4, "categorical", 2), hidden_size=8, head_cells=(8,))
    >>> critic.in_keys, critic.out_keys[-1]
    (['observation', 'critic_state', 'is_init'], 'state_value')
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch

from .jobs import CancelToken, check
from .keys import KEYS

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = ["CRITIC_HIDDEN", "build_critic", "make_collector", "collected_batch", "PPOUpdate"]

CRITIC_HIDDEN = "critic_state"
"""the critic GRU's hidden-state key"""


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


def _training_gym_env(env_id: str, options: dict):
    """``gym.make(env_id, **options)`` without its ``info`` (training reads none of it, and torchrl's vector
    reader trips on entries that are ``None`` in every environment, such as the cue task's ``correct``)."""
    import gymnasium as gym

    class NoInfo(gym.Wrapper):
        def reset(self, **kwargs):
            return self.env.reset(**kwargs)[0], {}

        def step(self, action):
            return (*self.env.step(action)[:4], {})

    return NoInfo(gym.make(env_id, **options))


def make_train_env(spec, policy):
    """The environments of a training run: one gymnasium ``SyncVectorEnv`` in one torchrl wrapper.

    Leaner than :func:`workbench.envs.make_env`'s ``SerialEnv`` of wrappers (one torchrl step
    for all ``spec.num_envs`` environments, auto-reset in the same step), with what training
    needs: ``InitTracker`` (``is_init``), ``StepCounter`` when ``spec.max_steps`` is set, and the
    primers of ``policy``; no true state, no info.

    Examples:
        >>> from workbench.envs import EnvSpec
        >>> from workbench.policy import PolicySpec, build_policy
        >>> spec = EnvSpec("workbench/CueMemory-v0", num_envs=3, delay=4)
        >>> env = make_train_env(spec, build_policy(PolicySpec(hidden_size=8), make_train_env(spec, None)))
        >>> td = env.rollout(6, break_when_any_done=False)
        >>> td.shape, td["is_init"][0, :, 0].tolist()
        (torch.Size([3, 6]), [True, False, False, False, False, True])
    """
    import functools

    import gymnasium as gym
    from torchrl.envs import GymWrapper, InitTracker, StepCounter, TransformedEnv
    from torchrl.modules.utils import get_primers_from_module

    from .envs import gym_options
    from .tasks import register_tasks

    register_tasks()  # the workbench/ ids, also in a fresh worker process

    make_one = functools.partial(_training_gym_env, spec.env_id, gym_options(spec))
    vector = gym.vector.SyncVectorEnv([make_one] * spec.num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    torchrl_log = logging.getLogger("torchrl")
    level = torchrl_log.level
    torchrl_log.setLevel(logging.WARNING)  # the wrapper logs its spec-finding dummy rollout at INFO
    try:  # a TransformedEnv whose VecGymEnvTransform moves the final observation of a reset env to "next"
        env = GymWrapper(vector, categorical_action_encoding=spec.categorical_actions, device="cpu")
    finally:
        torchrl_log.setLevel(level)
    transforms = [InitTracker()]
    if spec.max_steps is not None:
        transforms.append(StepCounter(spec.max_steps))
    primers = None if policy is None else get_primers_from_module(policy, warn=False)
    if primers is not None:
        transforms.append(primers)
    if not isinstance(env, TransformedEnv):
        env = TransformedEnv(env)
    for transform in transforms:
        env.append_transform(transform)
    if spec.seed is not None:
        env.set_seed(spec.seed)
    return env


def make_collector(env, policy, config: TrainConfig):
    """A torchrl ``Collector`` of ``config.frames_per_batch`` frames per batch, ``config.total_frames`` in all, sampling actions."""
    from torchrl.collectors import Collector
    from torchrl.envs.utils import ExplorationType

    return Collector(
        env, policy, frames_per_batch=config.frames_per_batch, total_frames=config.total_frames,
        exploration_type=ExplorationType.RANDOM, auto_register_policy_transforms=False,
    )


def collected_batch(data, num_envs: int):
    """A collected batch as ``[num_envs, T]`` rows, without the critic outputs the estimator recomputes."""
    data = data.reshape(num_envs, -1) if data.ndim == 1 else data
    return data.exclude("state_value", "critic_features")


class PPOUpdate:
    """One PPO update per collected batch: advantage, then ``epochs`` epochs of clipped PPO on whole-row minibatches.

    Args:
        actor: the policy (a ``ProbabilisticActor``).
        critic: :func:`build_critic`'s module.
        config: the run's :class:`~workbench.train.TrainConfig`.
    """

    def __init__(self, actor, critic, config: TrainConfig) -> None:
        from torchrl.objectives import ClipPPOLoss
        from torchrl.objectives.value import GAE

        self.config = config
        self.advantage = GAE(gamma=config.gamma, lmbda=config.lmbda, value_network=critic, average_gae=False,
                             deactivate_vmap=True, shifted=False)
        self.loss_module = ClipPPOLoss(actor, critic, clip_epsilon=config.clip_epsilon,
                                       entropy_bonus=config.entropy_coeff > 0,
                                       entropy_coeff=config.entropy_coeff or None, critic_coeff=config.critic_coeff,
                                       loss_critic_type="smooth_l1", normalize_advantage=True)
        self.params = list(actor.parameters()) + list(critic.parameters())
        self.optim = torch.optim.Adam(self.params, lr=config.lr)
        self.batches = max(1, math.ceil(config.total_frames / config.frames_per_batch))

    @property
    def lr(self) -> float:
        """The learning rate of the last update."""
        return self.optim.param_groups[0]["lr"]

    def __call__(self, data, index: int, *, cancel: CancelToken | None = None) -> dict[str, float]:
        """Updates on batch number ``index`` (``data``: ``[num_envs, T]``, rewards unscaled; scaled in place).

        ``cancel`` is checked before each epoch (:class:`~workbench.errors.Cancelled` leaves the weights
        part-updated: :func:`~workbench.train.train` puts back those of the last finished batch).

        Returns:
            The mean over the minibatches of ``loss_objective``, ``loss_critic`` and ``entropy`` (when computed).
        """
        from .gru import set_recurrent_mode

        config = self.config
        if config.reward_scale != 1.0:
            data.set(KEYS.reward, data[KEYS.reward] * config.reward_scale)
        if config.anneal_lr:
            for group in self.optim.param_groups:
                group["lr"] = config.lr * (1.0 - index / self.batches)
        sums: dict[str, float] = {}
        count = 0
        with torch.no_grad(), set_recurrent_mode(True):  # once per batch, as sb3 and CleanRL do
            self.advantage(data)
        for epoch in range(config.epochs):
            check(cancel, "PPO update", done=epoch, total=config.epochs, unit="epochs")
            order = torch.randperm(config.num_envs)
            for chunk in order.chunk(config.minibatches):
                losses = self.loss_module(data[chunk])
                total = losses["loss_objective"] + losses["loss_critic"]
                if "loss_entropy" in losses.keys():
                    total = total + losses["loss_entropy"]
                self.optim.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm)
                self.optim.step()
                for key in ("loss_objective", "loss_critic", "entropy"):
                    if key in losses.keys():
                        sums[key] = sums.get(key, 0.0) + float(losses[key].detach().mean())
                count += 1
        return {k: v / max(count, 1) for k, v in sums.items()}
