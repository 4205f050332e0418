"""Policy builder: environment and architecture controls → ``workbench.policy.build_policy``.

Shows the module, the GRU's keys, the primer the environment gets, and the parameter count;
saves and loads checkpoints. Emits ``"policy"`` with a :class:`BuiltPolicy`.

Trained agents are one click away: the *agent* dropdown lists the shipped checkpoints
(``assets/agents``) and those in a chosen folder (*Refresh* re-reads it); choosing one loads it,
as *Load* does with a typed path. A loaded agent runs on ``torch.nn.GRU``, which hides its gates: *Record
gates* swaps it to the Python cell with the same weights (:func:`~workbench.policy.with_recorded_gates`)
and emits it as a new policy; the description says when gates are not recorded.

Saving is safe: a loaded checkpoint's metadata (e.g. ``env_id`` from ``workbench train``) is
written back with what changed; an existing file is never overwritten without the explicit
``overwrite`` tick (the panel proposes a free name instead); files under the repository's
``assets/`` are never written, and the default path is a fresh name in :data:`USER_FOLDER`.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w

from workbench.envs import VELOCITY_MASKS, EnvSpec
from workbench.files import check_output_path, free_name, is_shipped_asset
from workbench.checkpoints import (CheckpointInfo, checkpoint_metadata, find_checkpoints, load_checkpoint,
                                   save_checkpoint, shipped_checkpoints)
from workbench.policy import (PolicyIO, PolicySpec, build_policy, policy_spec_of, recurrent_modules,
                              with_recorded_gates)
from workbench.specs import settings
from workbench.session import policy_io
from workbench.tasks import TASKS

from ._panel import Panel, SaveConflict, controls_for, html_table, read_controls, set_controls

__all__ = ["BuiltPolicy", "PolicyPanel", "USER_FOLDER", "POLICY_FIELDS", "GATES_NOT_RECORDED", "agent_options"]

POLICY_FIELDS = ("hidden_size", "num_layers", "head_cells", "activation", "python_based", "record_gates",
                 "recurrent_backend", "seed")
"""the :class:`~workbench.policy.PolicySpec` fields the panel has a control for (built from their settings)"""

USER_FOLDER = Path.home() / "gru-workbench" / "agents"
"""where the panel proposes to save checkpoints (never the repository's ``assets/``)"""


NO_AGENT = "— choose a trained agent —"
"""the agent dropdown's first entry (value ``""``): nothing chosen"""

GATES_NOT_RECORDED = "gates not recorded: nn.GRU backend; click Record gates"
"""the description's line for a policy on ``torch.nn.GRU`` (the explorer then has no gates row)"""


def agent_options(agents: list[CheckpointInfo]) -> list[tuple[str, str]]:
    """The agent dropdown's ``(label, path)`` options: nothing chosen first (path ``""``: a ``None`` value would
    show an empty dropdown), then one per checkpoint.

    Examples:
        >>> from workbench.checkpoints import shipped_checkpoints
        >>> [label.split(" · ")[0] for label, _ in agent_options(shipped_checkpoints())]
        ['— choose a trained agent —', 'cartpole_novel.pt', 'cue_memory.pt']
    """
    return [(NO_AGENT, "")] + [(info.label, str(info.path)) for info in agents]


# buttons keep their text: their own width, never shrunk by the row (a row wraps instead)
_BUTTON = dict(width="auto", min_width="fit-content", flex="0 0 auto", overflow="visible")
_ROW = dict(flex_flow="row wrap", align_items="center", width="100%")


@dataclass
class BuiltPolicy:
    """What the policy panel emits: the policy, how it was made, and for which environment."""

    policy: Any
    """the torchrl ``ProbabilisticActor`` (GRU → head → distribution)"""
    spec: PolicySpec
    """its architecture"""
    env_spec: EnvSpec
    """the environment it acts in (``env_id`` and ``hide_velocity``; the rollout panel sets the rest)"""
    source: str = "built"
    """``"built"`` or the checkpoint path it was loaded from"""
    metadata: dict[str, Any] = field(default_factory=dict)
    """the metadata of the checkpoint it was loaded from (``{}`` when built); Save writes it back"""


def _key(key) -> str:
    return ".".join(key) if isinstance(key, tuple) else str(key)


def _describe(built: BuiltPolicy) -> str:
    """HTML: one line of architecture, the GRU's keys, the primer spec, the module (collapsed)."""
    policy, spec = built.policy, built.spec
    gru = recurrent_modules(policy)[0]
    io = policy_spec_of(policy)[1]
    total = sum(p.numel() for p in policy.parameters())
    in_gru = sum(p.numel() for p in gru.parameters())
    action = (f"TanhNormal over {io.action_size} dim(s) in {io.action_range}"
              if io.action_kind == "continuous" else f"{io.action_kind} over {io.action_size} actions")
    cell = "Python cell" + (", gates recorded" if spec.record_gates else "") if spec.python_based else "torch.nn.GRU"
    if spec.record_gates:
        gates = ""
    elif spec.python_based:
        gates = ("<span class='wb-gates-off' style='color:#a05a00'><b>gates not recorded</b>: tick "
                 "<i>record gates</i> and build again</span><br>")
    else:
        gates = (f"<span class='wb-gates-off' style='color:#a05a00'><b>{html.escape(GATES_NOT_RECORDED)}</b> "
                 "(the same weights on the Python cell; the explorer then shows the gates)</span><br>")
    primer = gru.make_tensordict_primer()
    rows = [[f"<code>{html.escape(_key(k))}</code>", str(list(s.shape)), str(s.dtype).replace("torch.", ""),
             str(s.device)] for k, s in primer.primers.items(True, True)]
    keys = lambda ks: ", ".join(f"<code>{html.escape(_key(k))}</code>" for k in ks)  # noqa: E731
    return (
        f"<div style='font-size:13px'>"
        f"<b>{html.escape(built.env_spec.env_id)}</b>{' (velocities hidden)' if built.env_spec.hide_velocity else ''}: "
        f"observation {io.observation_size} → GRU {spec.hidden_size} × {spec.num_layers} layer(s) ({cell}, "
        f"backend <code>{html.escape(spec.recurrent_backend)}</code>) → head {list(spec.head_cells)} "
        f"{spec.activation} → {html.escape(action)}<br>"
        f"<b>{total:,}</b> parameters ({in_gru:,} in the GRU) · source: {html.escape(built.source)}<br>"
        f"{gates}"
        f"GRU in_keys: {keys(gru.in_keys)} · out_keys: {keys(gru.out_keys)}<br>"
        f"Primer (<code>make_tensordict_primer()</code>, zeros at reset):"
        f"{html_table(['key', 'shape', 'dtype', 'device'], rows, numeric_from=9)}"
        f"<details><summary style='cursor:pointer'>module</summary>"
        f"<pre style='font-size:11px;max-height:300px;overflow:auto'>{html.escape(repr(policy))}</pre></details></div>"
    )


class PolicyPanel(SaveConflict, Panel):
    """Builds a recurrent policy from an :class:`~workbench.envs.EnvSpec` and a
    :class:`~workbench.policy.PolicySpec` (the controls start from them).

    Public: ``build()`` / ``save()`` / ``load()`` (what the buttons do), ``built`` (the last
    :class:`BuiltPolicy`), ``policy_spec()`` / ``env_spec()`` (the controls read as specs),
    ``on_policy(cb)``.
    """

    EVENTS = ("figures", "policy")

    def __init__(self, policy_spec: PolicySpec | None = None, env_spec: EnvSpec | None = None,
                 *, checkpoint: str | None = None, user_folder: str | Path | None = None):
        super().__init__(title="Policy builder", css="wb-policy")
        spec = policy_spec or PolicySpec(python_based=True, record_gates=True)
        env = env_spec or EnvSpec("CartPole-v1", hide_velocity=True)
        style = dict(style={"description_width": "100px"}, layout={"width": "250px"})
        env_ids = sorted(VELOCITY_MASKS) + sorted(TASKS)
        env_ids += [env.env_id] if env.env_id not in env_ids else []
        self.env_id = w.Dropdown(options=env_ids, value=env.env_id, description=settings(EnvSpec)["env_id"].label,
                                 **style)
        self.hide_velocity = controls_for(env, ["hide_velocity"], style=style["style"])["hide_velocity"]
        self.spec_controls = controls_for(spec, POLICY_FIELDS, **style)
        c = self.spec_controls
        self.hidden_size, self.num_layers, self.head_cells, self.activation = (
            c["hidden_size"], c["num_layers"], c["head_cells"], c["activation"])
        self.python_based, self.record_gates, self.backend, self.seed = (
            c["python_based"], c["record_gates"], c["recurrent_backend"], c["seed"])
        self.head_cells.placeholder = "e.g. 32, 32 (empty: linear)"
        self.build_button = w.Button(description="Build policy", button_style="primary", icon="cogs")
        self.user_folder = Path(user_folder if user_folder is not None else USER_FOLDER).expanduser()
        if checkpoint is None:
            checkpoint = str(free_name(self.user_folder / "policy.pt"))
        self.path = w.Text(value=checkpoint, description="checkpoint", style={"description_width": "80px"},
                           layout=w.Layout(flex="1 1 240px", min_width="200px", width="auto"))
        self.save_button = w.Button(description="Save", icon="save", layout=w.Layout(**_BUTTON))
        self.load_button = w.Button(description="Load", icon="folder-open", layout=w.Layout(**_BUTTON))
        self.build_button.layout = w.Layout(**_BUTTON)
        # trained agents: the shipped ones and those in a folder; choosing one loads it
        self.agent = w.Dropdown(options=[(NO_AGENT, "")], value="", description="agent",
                                style={"description_width": "80px"},
                                layout=w.Layout(flex="1 1 300px", min_width="220px", width="auto"))
        self.folder = w.Text(value=str(self.user_folder), description="folder", placeholder="a folder of .pt files",
                             style={"description_width": "80px"},
                             layout=w.Layout(flex="1 1 240px", min_width="200px", width="auto"))
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="list the folder's checkpoints",
                                       layout=w.Layout(**_BUTTON))
        self.gates_button = w.Button(description="Record gates", icon="eye", tooltip=(
            "swap to the Python cell with the same weights, so rollouts record the GRU's gates"),
            layout=w.Layout(**_BUTTON))
        self._choosing = False
        # shown only when Save would overwrite: the explicit confirm, and "save under the proposed name"
        self._conflict_controls()
        self.summary = w.HTML()
        self.buttons += [self.build_button, self.save_button, self.load_button, self.save_as_button,
                         self.refresh_button, self.gates_button]
        self.built: BuiltPolicy | None = None

        self.build_button.on_click(lambda _: self.build())
        self.save_button.on_click(lambda _: self.save())
        self.load_button.on_click(lambda _: self.load())
        self.refresh_button.on_click(lambda _: self.refresh_agents())
        self.gates_button.on_click(lambda _: self.record_gates_now())
        self.agent.observe(lambda change: self._agent_chosen(change["new"]), "value")
        self.path.observe(lambda _: self._hide_conflict(), "value")
        self.path.observe(self._path_typed, "value")
        self.python_based.observe(lambda _: self.refresh_controls(), "value")
        self.env_id.observe(lambda _: self.refresh_controls(), "value")
        self.refresh_controls()
        self._list_agents(quiet=True)
        self.children = [
            self.header,
            w.HBox([self.agent], layout=w.Layout(**_ROW)),
            w.HBox([self.folder, self.refresh_button], layout=w.Layout(**_ROW)),
            w.HBox([w.VBox([self.env_id, self.hidden_size, self.num_layers, self.head_cells, self.activation]),
                    w.VBox([self.hide_velocity, self.python_based, self.record_gates, self.backend, self.seed])],
                   layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.build_button, self.gates_button, self.path, self.load_button, self.save_button],
                   layout=w.Layout(**_ROW)),
            w.HBox([self.overwrite, self.save_as_button], layout=w.Layout(**_ROW)),
            self.status,
            self.summary,
        ]

    # ------------------------------------------------------------------ controls ↔ specs
    def refresh_controls(self) -> None:
        # the workbench/ tasks hide their velocities already; only VELOCITY_MASKS ids take the option
        self.hide_velocity.disabled = self.env_id.value not in VELOCITY_MASKS
        if self.hide_velocity.disabled:
            self.hide_velocity.value = False
        self.record_gates.disabled = not self.python_based.value
        if not self.python_based.value:
            self.record_gates.value = False
        self.save_button.disabled = self.built is None
        self.save_as_button.disabled = self.built is None or self.proposed is None
        self.gates_button.disabled = self.built is None or self.built.spec.record_gates
        self.gates_button.layout.display = "none" if self.built is None or self.built.spec.record_gates else ""

    def policy_spec(self) -> PolicySpec:
        """The controls read as a :class:`PolicySpec` (the spec validates them)."""
        return PolicySpec(**read_controls(PolicySpec, self.spec_controls))

    def env_spec(self) -> EnvSpec:
        """The environment controls read as an :class:`EnvSpec` (one env; the rollout panel sets the rest)."""
        return EnvSpec(self.env_id.value, hide_velocity=self.hide_velocity.value)

    def set_spec(self, spec: PolicySpec) -> None:
        """Sets the controls from a spec."""
        set_controls(self.spec_controls, spec)

    def set_env_spec(self, env_spec: EnvSpec) -> None:
        """Sets the environment controls (``env_id``, ``hide_velocity``) from a spec."""
        if env_spec.env_id not in self.env_id.options:
            self.env_id.options = [*self.env_id.options, env_spec.env_id]
        self.env_id.value = env_spec.env_id
        self.hide_velocity.value = env_spec.hide_velocity and not self.hide_velocity.disabled

    # ------------------------------------------------------------------ actions
    def _env_io(self, env_spec: EnvSpec) -> PolicyIO:
        return policy_io(env_spec)

    def build(self) -> None:
        """Builds the policy of the controls (on CPU; the rollout panel moves it) and emits ``"policy"``."""
        with self.busy("Building the policy…"):
            spec, env_spec = self.policy_spec(), self.env_spec()
            policy = build_policy(spec, self._env_io(env_spec), device="cpu")
            self._choosing = True  # a built policy is no trained agent: the dropdown says 'choose' again
            try:
                self.agent.value = ""
            finally:
                self._choosing = False
            self._publish(BuiltPolicy(policy, spec, env_spec, "built"), "Policy built.")

    def save(self) -> None:
        """Saves the last built or loaded policy to the checkpoint path, with its metadata.

        Never overwrites a file without the ``overwrite`` tick, and never a shipped asset:
        then it shows why and proposes a free name (``save_as_proposed()`` uses it).
        """
        with self.busy("Saving…"):
            if self.built is None:
                raise RuntimeError("Nothing to save yet: click 'Build policy' (or load a checkpoint) first.")
            target = Path(self.path.value).expanduser()
            if is_shipped_asset(target):
                self._show_conflict(free_name(self.user_folder / target.name), confirm=False, text=(
                    f"{target} is a shipped checkpoint under assets/: it is never overwritten, not even with "
                    "'overwrite'. Save under the proposed name in your folder instead."))
                return
            real = check_output_path(target, what="checkpoint")
            if real.exists() and not self.overwrite.value:
                self._show_conflict(free_name(target), confirm=True, text=(
                    f"{target} exists: nothing was saved. Save under the proposed name, or tick "
                    "'overwrite the existing file' and click Save again."))
                return
            path = save_checkpoint(self.built.policy, self.built.spec, target, metadata=self._metadata())
            self._hide_conflict()
            self.show_message(f"Saved to {path.resolve()}", "ok")

    def _save_again(self) -> None:
        self.save()

    def _metadata(self) -> dict[str, Any]:
        """What Save stores: the loaded checkpoint's metadata (``env_id`` included) kept as it came, plus
        where the policy came from and the environment the panel had selected."""
        built = self.built
        env = {"env_id": built.env_spec.env_id, "hide_velocity": built.env_spec.hide_velocity}
        return {**built.metadata, "source": built.source, "panel_env": env}

    def load(self) -> None:
        """Loads the checkpoint path; the selected environment must fit its observation and action sizes."""
        with self.busy("Loading…"):
            path = Path(self.path.value).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"No checkpoint at {path.resolve()}: check the path, or 'Save' one first.")
            policy, spec = load_checkpoint(path)
            metadata = checkpoint_metadata(path)
            trained_on = metadata.get("env_id")  # recorded by `workbench train`
            if trained_on in self.env_id.options:
                self.env_id.value = trained_on
            env_spec = self.env_spec()
            delay = (metadata.get("env") or {}).get("delay")  # the task's knob it was trained with
            if delay is not None and env_spec.env_id == trained_on:
                env_spec = dataclasses.replace(env_spec, delay=delay)
            want, got = policy_spec_of(policy)[1], self._env_io(env_spec)
            if want != got:
                raise ValueError(
                    f"The checkpoint's policy reads {want.observation_size} observation features and acts with "
                    f"{want.action_kind}({want.action_size}); the selected environment {env_spec.env_id!r}"
                    f"{' with velocities hidden' if env_spec.hide_velocity else ''} gives {got.observation_size} and "
                    f"{got.action_kind}({got.action_size}). Select the environment it was built for, then load again."
                )
            self.set_spec(spec)
            self._publish(BuiltPolicy(policy, spec, env_spec, str(path), metadata), f"Loaded {path}.")

    def _publish(self, built: BuiltPolicy, message: str) -> None:
        self.built = built
        self.summary.value = _describe(built)
        self.refresh_controls()
        self.show_message(message, "ok")
        self.emit("policy", built)

    # ------------------------------------------------------------------ trained agents
    def _list_agents(self, *, quiet: bool) -> list[tuple[Any, str]]:
        """Fills the agent dropdown: the shipped agents, then the folder's checkpoints (``skipped`` returned).

        ``quiet`` (at start): a folder that is not there lists nothing instead of raising."""
        agents, skipped = list(shipped_checkpoints()), []
        text = self.folder.value.strip()
        if text:
            folder = Path(text).expanduser()
            if folder.is_dir() or not quiet:
                listing = find_checkpoints(folder)
                seen = {a.path.resolve() for a in agents}
                agents += [a for a in listing.checkpoints if a.path.resolve() not in seen]
                skipped = listing.skipped
        chosen = self.agent.value
        self._choosing = True
        try:
            self.agent.options = agent_options(agents)
            self.agent.value = chosen if chosen in [str(a.path) for a in agents] else ""
        finally:
            self._choosing = False
        return skipped

    def refresh_agents(self) -> None:
        """Re-reads the folder: the dropdown lists the shipped agents and the folder's checkpoints; a ``.pt``
        file that is not a workbench checkpoint is named with the reason it was skipped."""
        with self.busy("Listing checkpoints…"):
            skipped = self._list_agents(quiet=False)
            found = len(self.agent.options) - 1
            text = f"{found} agent(s) in the list (shipped and {self.folder.value.strip() or 'no folder'})."
            if skipped:
                names = "; ".join(f"{p.name} ({why})" for p, why in skipped[:5])
                more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
                self.show_message(f"{text} Skipped {len(skipped)} file(s) that are not workbench checkpoints: "
                                  f"{names}{more}.", "warning")
            else:
                self.show_message(text, "ok")

    def _agent_chosen(self, path: str) -> None:
        if self._choosing or not path:
            return
        self._choosing = True
        try:
            self.path.value = path
        finally:
            self._choosing = False
        self.load()

    def _path_typed(self, change) -> None:
        """A typed path that is not the chosen agent's: the dropdown goes back to 'choose'."""
        if not self._choosing and change["new"] != self.agent.value:
            self._choosing = True
            try:
                self.agent.value = ""
            finally:
                self._choosing = False

    def record_gates_now(self) -> None:
        """Swaps the loaded (or built) ``nn.GRU`` policy to the Python cell with the same weights, recording the
        gates (:func:`~workbench.policy.with_recorded_gates`), and emits it as a new policy."""
        with self.busy("Swapping to the Python cell…"):
            built = self.built
            if built is None:
                raise RuntimeError("Nothing to swap yet: choose an agent, load a checkpoint or build a policy first.")
            if built.spec.record_gates:
                self.show_message("This policy records its gates already.", "ok")
                return
            twin = with_recorded_gates(built.policy)
            spec = policy_spec_of(twin)[0]
            self.set_spec(spec)
            self.refresh_controls()
            self._publish(dataclasses.replace(built, policy=twin, spec=spec),
                          "Recording gates: the same weights on the Python cell (its outputs equal nn.GRU's); "
                          "run a rollout to see them.")

    def on_policy(self, callback: Callable[[BuiltPolicy], Any], remove: bool = False) -> None:
        """``callback(built)`` after every build or load."""
        self.on("policy", callback, remove)
