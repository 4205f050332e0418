"""Trained agents in the policy panel: the dropdown (shipped and a folder's), Record gates, the action range.

Headless (no kernel, no browser): ``dropdown.value = ...`` and ``button.click()`` run the callbacks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from widgets.app import WorkbenchApp
from widgets.policy_panel import GATES_NOT_RECORDED, PolicyPanel
from workbench.checkpoints import (checkpoint_of, find_checkpoints, load_checkpoint, save_checkpoint,
                                   shipped_checkpoints)
from workbench.envs import EnvSpec, make_env
from workbench.errors import ConfigError
from workbench.files import SHIPPED_ASSETS
from workbench.keys import KEYS
from workbench.policy import PolicyIO, PolicySpec, build_policy, policy_spec_of, recurrent_modules, with_recorded_gates
from workbench.rollout import rollout

SHIPPED = SHIPPED_ASSETS / "agents"
CUE = SHIPPED / "cue_memory.pt"
CARTPOLE = SHIPPED / "cartpole_novel.pt"


def text(html_value: str) -> str:
    return re.sub(r"<[^>]+>", "", html_value)


@pytest.fixture
def panel(tmp_path) -> PolicyPanel:
    return PolicyPanel(user_folder=tmp_path / "mine")


class TestListing:
    def test_shipped_checkpoints_have_labels(self):
        """Both shipped agents are found, labelled with their environment, hidden size and return."""
        agents = {a.path.name: a for a in shipped_checkpoints()}
        assert sorted(agents) == ["cartpole_novel.pt", "cue_memory.pt"]
        assert agents["cartpole_novel.pt"].label == (
            "cartpole_novel.pt · workbench/CartPoleNoVel-v1 · GRU 64 · return 500 · shipped")
        assert agents["cue_memory.pt"].env_id == "workbench/CueMemory-v0"
        assert agents["cue_memory.pt"].spec.hidden_size == 32
        assert agents["cue_memory.pt"].mean_return == pytest.approx(0.96875)

    def test_folder_listing_reads_solved_and_skips_foreign_files(self, tmp_path):
        """A folder's checkpoints are listed with what their metadata records; other .pt files are skipped,
        with the reason; a missing folder is a ConfigError naming the argument."""
        spec = PolicySpec(hidden_size=4)
        policy = build_policy(spec, PolicyIO(3, "categorical", 2), device="cpu")
        save_checkpoint(policy, spec, tmp_path / "b.pt",
                        metadata={"env_id": "workbench/CueMemory-v0", "solved": True, "eval_return": 1.0})
        (tmp_path / "a.pt").write_text("not a checkpoint")
        torch.save({"weights": torch.zeros(2)}, tmp_path / "c.pt")
        (tmp_path / "notes.txt").write_text("ignored")
        listing = find_checkpoints(tmp_path)
        assert [c.label for c in listing.checkpoints] == [
            "b.pt · workbench/CueMemory-v0 · GRU 4 · solved · return 1"]
        assert [(p.name, why) for p, why in listing.skipped] == [
            ("a.pt", "not a GRU Workbench checkpoint: the file is text, not a checkpoint"),
            ("c.pt", "not a GRU Workbench checkpoint (no 'gru-workbench-checkpoint' tag)."),
        ]
        with pytest.raises(ConfigError, match=r"'folder' must be an existing folder; got .*nope.* \(no such folder\)"):
            find_checkpoints(tmp_path / "nope")
        with pytest.raises(ConfigError, match=r"\(a file, not a folder\)"):
            find_checkpoints(tmp_path / "b.pt")


class TestAgentDropdown:
    def test_lists_both_shipped_agents(self, panel):
        labels = [label for label, _ in panel.agent.options]
        assert labels[0].startswith("— choose")
        assert labels[1:] == [a.label for a in shipped_checkpoints()]
        assert panel.agent.value == "" and panel.agent.label.startswith("— choose")

    def test_choosing_an_agent_loads_it(self, panel):
        """Choosing loads the file, as Load does: the same weights as load_checkpoint's, its environment selected,
        the policy emitted, and a line saying gates are not recorded (nn.GRU)."""
        got = []
        panel.on_policy(got.append)
        panel.agent.value = str(CUE)
        assert panel.last_error is None, panel.message
        assert panel.path.value == str(CUE)
        assert panel.env_id.value == "workbench/CueMemory-v0"
        assert len(got) == 1 and got[0] is panel.built and got[0].source == str(CUE)
        reference, spec = load_checkpoint(CUE)
        assert panel.built.spec == spec
        mine, theirs = panel.built.policy.state_dict(), reference.state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
        assert GATES_NOT_RECORDED in text(panel.summary.value)
        assert panel.gates_button.layout.display == "" and not panel.gates_button.disabled

    def test_building_a_policy_resets_the_choice_without_loading(self, panel):
        panel.agent.value = str(CUE)
        got = []
        panel.on_policy(got.append)
        panel.build_button.click()
        assert panel.last_error is None, panel.message
        assert panel.agent.value == "" and panel.agent.label.startswith("— choose") and len(got) == 1 and got[0].source == "built"

    def test_typing_a_path_still_loads_and_resets_the_choice(self, panel):
        panel.agent.value = str(CUE)
        panel.path.value = str(CARTPOLE)
        assert panel.agent.value == "" and panel.agent.label.startswith("— choose")
        panel.load_button.click()
        assert panel.last_error is None, panel.message
        assert panel.built.source == str(CARTPOLE) and panel.built.spec.hidden_size == 64

    def test_folder_with_a_foreign_file_and_a_bad_folder(self, panel, tmp_path):
        """Refresh lists a folder's checkpoints, names the .pt files it skipped, and a bad folder is one clear
        error; the panel keeps working after both."""
        folder = tmp_path / "runs"
        folder.mkdir()
        spec = PolicySpec(hidden_size=4)
        policy = build_policy(spec, make_env(EnvSpec("CartPole-v1", hide_velocity=True)), device="cpu")
        save_checkpoint(policy, spec, folder / "mine.pt", metadata={"env_id": "CartPole-v1"})
        (folder / "junk.pt").write_bytes(b"\x00" * 64)
        panel.folder.value = str(folder)
        panel.refresh_button.click()
        assert panel.last_error is None
        assert "Skipped 1 file(s) that are not workbench checkpoints: junk.pt (not a GRU Workbench checkpoint" \
            in panel.message
        labels = [label for label, _ in panel.agent.options]
        assert labels[-1] == "mine.pt · CartPole-v1 · GRU 4" and len(labels) == 4

        panel.folder.value = str(tmp_path / "missing")
        panel.refresh_button.click()
        assert isinstance(panel.last_error, ConfigError)
        assert "find_checkpoints: 'folder' must be an existing folder" in panel.message
        assert [label for label, _ in panel.agent.options] == labels  # the list it had stays
        assert not panel.refresh_button.disabled

        panel.agent.value = str(folder / "mine.pt")  # still works
        assert panel.last_error is None, panel.message
        assert panel.built.spec.hidden_size == 4 and panel.env_id.value == "CartPole-v1"


class TestRecordGates:
    def test_twin_has_the_same_outputs(self):
        """with_recorded_gates: the Python cell with the same weights; the hidden states and the logits of a
        rollout equal the nn.GRU policy's (tolerance 1e-5) on the same seed, and the gates are recorded."""
        native, _ = load_checkpoint(CUE)
        twin = with_recorded_gates(native)
        assert type(recurrent_modules(native)[0].gru).__name__ == "GRU"
        assert type(recurrent_modules(twin)[0].gru).__name__ == "PythonGRU"
        assert checkpoint_of(twin) == checkpoint_of(native)  # provenance: the same file
        env_spec = EnvSpec("workbench/CueMemory-v0", num_envs=2, seed=0)
        runs = []
        for policy in (native, twin):
            env = make_env(env_spec, policy)
            try:
                runs.append(rollout(policy, env, 40, seed=3, progress=False, device="cpu"))
            finally:
                env.close()
        a, b = runs
        assert KEYS.gates not in a.keys(True) and KEYS.gates in b.keys(True)
        assert b[KEYS.gates].shape == (2, 40, 1, 3, 32)
        assert torch.equal(a[KEYS.is_init], b[KEYS.is_init])
        assert torch.equal(a[KEYS.action], b[KEYS.action])
        torch.testing.assert_close(b[KEYS.next_hidden], a[KEYS.next_hidden], atol=1e-5, rtol=0)
        torch.testing.assert_close(b["logits"], a["logits"], atol=1e-5, rtol=0)
        assert a[KEYS.next_hidden].abs().max() > 0.1  # a real run, not zeros

    def test_button_emits_the_swapped_policy_to_the_app(self):
        """In the app: choose the cue agent, Record gates, run: the rollout panel has the swapped policy and the
        trajectory has gates; the description no longer says gates are not recorded."""
        app = WorkbenchApp(steps=30, device="cpu")
        policy_panel = app.policy_panel
        policy_panel.agent.value = str(CUE)
        native = policy_panel.built.policy
        policy_panel.gates_button.click()
        assert policy_panel.last_error is None, policy_panel.message
        built = policy_panel.built
        assert built.policy is not native and built.spec.record_gates and built.spec.python_based
        assert policy_spec_of(built.policy)[0] == built.spec
        assert built.source == str(CUE) and built.metadata["env_id"] == "workbench/CueMemory-v0"
        assert GATES_NOT_RECORDED not in text(policy_panel.summary.value)
        assert "gates recorded" in text(policy_panel.summary.value)
        assert policy_panel.gates_button.layout.display == "none"
        assert policy_panel.python_based.value and policy_panel.record_gates.value
        assert app.rollout_panel.built is built
        app.run()
        assert app.rollout_panel.last_error is None, app.rollout_panel.message
        assert KEYS.gates in app.trajectory.keys(True)
        assert "gates" in app.explorer_panel.figures


def test_action_range_reads_like_maths(tmp_path):
    """A continuous action's range prints as [-2, 2] in the policy panel, not as tuples."""
    panel = PolicyPanel(PolicySpec(hidden_size=4), EnvSpec("Pendulum-v1", hide_velocity=True),
                        user_folder=tmp_path)
    panel.build_button.click()
    assert panel.last_error is None, panel.message
    summary = text(panel.summary.value)
    assert "TanhNormal over 1 dim(s) in [-2, 2]" in summary
    assert "(-2.0,)" not in summary
    assert PolicyIO(2, "continuous", 2, (-1.0, 0.0), (1.0, 0.5)).action_range == "[-1, 1] × [0, 0.5]"


def test_notebook_01_prints_no_generator():
    """Notebook 01 does not end a cell with a bare torch.manual_seed (it would print <torch._C.Generator ...>)."""
    path = Path(__file__).resolve().parent.parent / "notebooks" / "01-quickstart.ipynb"
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        lines = [ln for ln in "".join(cell["source"]).splitlines() if ln.strip() and not ln.strip().startswith("#")]
        assert not (lines and re.match(r"^torch\.manual_seed\(", lines[-1])), "".join(cell["source"])
        for output in cell.get("outputs", []):
            assert "torch._C.Generator" not in json.dumps(output)
