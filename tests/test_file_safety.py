"""workbench.files writes: through symlinks, never over devices or FIFOs, errors naming the target,
and the temporary files of killed writers cleaned up on the next save."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import workbench.files
from workbench.errors import OutputPathError
from workbench.files import STALE_AFTER_S, atomic_torch_save, atomic_write, clean_stale_temp_files

REPO = Path(__file__).resolve().parent.parent


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def spy_mkstemp(monkeypatch):
    """Records the folder of every temporary file atomic_write makes."""
    folders = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        folders.append(Path(kwargs["dir"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(workbench.files.tempfile, "mkstemp", spy)
    return folders


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class TestSymlinks:
    def test_symlink_is_written_through(self, tmp_path, spy_mkstemp):
        """The link stays a link; its target gets the new bytes; the temp file is made in the target's folder."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        real = elsewhere / "real.pt"
        real.write_bytes(b"old")
        link = tmp_path / "link.pt"
        link.symlink_to(real)
        assert atomic_write(link, b"new") == link
        assert link.is_symlink() and os.readlink(link) == str(real)
        assert real.read_bytes() == b"new"
        assert spy_mkstemp == [elsewhere]
        assert temp_files(tmp_path) == [] and temp_files(elsewhere) == []

    def test_chain_of_symlinks(self, tmp_path):
        """a -> b -> c: both links stay, c gets the bytes."""
        c = tmp_path / "c.bin"
        c.write_bytes(b"old")
        (tmp_path / "b.bin").symlink_to(c)
        (tmp_path / "a.bin").symlink_to(tmp_path / "b.bin")
        atomic_write(tmp_path / "a.bin", b"via chain")
        assert (tmp_path / "a.bin").is_symlink() and (tmp_path / "b.bin").is_symlink()
        assert c.read_bytes() == b"via chain"

    def test_dangling_symlink_creates_its_target(self, tmp_path, spy_mkstemp):
        """A link to a file that does not exist yet: the file is created (with its folder), the link kept."""
        target = tmp_path / "store" / "deep" / "ckpt.pt"
        link = tmp_path / "ckpt.pt"
        link.symlink_to(target)
        atomic_torch_save({"x": 1}, link)
        assert link.is_symlink() and target.is_file()
        assert spy_mkstemp == [target.parent]

    def test_symlink_loop_is_refused(self, tmp_path):
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        with pytest.raises(OutputPathError, match=r"out: expected a regular file path; '.*a' is a symlink loop"):
            atomic_write(tmp_path / "a", b"x", what="out")
        assert os.readlink(tmp_path / "a") == str(tmp_path / "b")

    def test_mode_of_the_target_is_kept(self, tmp_path):
        real = tmp_path / "real"
        real.write_bytes(b"old")
        real.chmod(0o600)
        (tmp_path / "link").symlink_to(real)
        atomic_write(tmp_path / "link", b"new")
        assert stat.S_IMODE(real.stat().st_mode) == 0o600


class TestNonRegular:
    @pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="needs /dev/null")
    def test_dev_null_is_refused_and_stays_a_device(self):
        """`train --out /dev/null` as root used to replace the device with a regular file."""
        with pytest.raises(OutputPathError, match=r"--out: expected a regular file path; '/dev/null' is a character device"):
            atomic_write("/dev/null", b"x", what="--out")
        assert Path("/dev/null").is_char_device()

    def test_fifo_and_symlink_to_fifo_are_refused(self, tmp_path):
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        (tmp_path / "link").symlink_to(fifo)
        for path in (fifo, tmp_path / "link"):
            with pytest.raises(OutputPathError, match=r"is a FIFO"):
                atomic_torch_save({"x": 1}, path)
        assert stat.S_ISFIFO(fifo.stat().st_mode) and temp_files(tmp_path) == []

    def test_folder_is_refused(self, tmp_path):
        with pytest.raises(OutputPathError, match=r"expected a file path; '.*' is a folder"):
            atomic_write(tmp_path, b"x")


class TestErrorsNameTheTarget:
    def test_failed_write_names_the_real_target_not_the_temp_file(self, tmp_path, monkeypatch):
        """A disk-full error says which file could not be written (the link's target), never '.tmp'."""
        real = tmp_path / "real.pt"
        real.write_bytes(b"old")
        (tmp_path / "link.pt").symlink_to(real)

        def half_then_fail(fh, data):
            fh.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(workbench.files, "_write_bytes", half_then_fail)
        with pytest.raises(OutputPathError) as info:
            atomic_write(tmp_path / "link.pt", b"0123456789")
        assert str(info.value) == f"[Errno 28] No space left on device: {str(real)!r}"
        assert info.value.errno == 28 and info.value.filename == str(real)
        assert isinstance(info.value, OSError) and ".tmp" not in str(info.value)
        assert real.read_bytes() == b"old" and temp_files(tmp_path) == []

    def test_folder_refusing_the_temp_file_names_the_target(self, tmp_path, monkeypatch):
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(tmp_path / ".x.tmp"))

        monkeypatch.setattr(workbench.files.tempfile, "mkstemp", refuse)
        with pytest.raises(OutputPathError, match=rf"^\[Errno 13\] Permission denied: '{tmp_path}/f.pt'$"):
            atomic_write(tmp_path / "f.pt", b"x")


class TestStaleTempFiles:
    def test_temp_name_carries_the_pid(self, tmp_path, spy_mkstemp, monkeypatch):
        """While the write runs, the temp file is .NAME.PID.XXXXXXXX.tmp in the target's folder."""
        seen = []
        real = workbench.files._write_bytes

        def look(fh, data):
            seen.extend(temp_files(tmp_path))
            real(fh, data)

        monkeypatch.setattr(workbench.files, "_write_bytes", look)
        atomic_write(tmp_path / "ckpt.pt", b"x")
        assert len(seen) == 1 and workbench.files._TEMP.match(seen[0])
        assert seen[0].startswith(f".ckpt.pt.{os.getpid()}.")

    def test_next_save_removes_only_stale_temp_files_of_ours(self, tmp_path):
        """Dead writer's and old files go; a live writer's fresh file and users' files stay."""
        live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            names = {
                f".ckpt.pt.{dead_pid()}.abcd1234.tmp": False,      # writer gone
                f".other.pt.{dead_pid()}.zz_99xyz.tmp": False,     # another target in the folder: also ours
                f".ckpt.pt.{live.pid}.livefile.tmp": True,         # a live concurrent writer
                f".ckpt.pt.{os.getpid()}.mythread.tmp": True,      # this process (another thread)
                ".ckpt.pt.oldstyle.tmp": True,                     # old pattern, fresh: maybe writing
                ".notes.tmp": True,                                # not our pattern
                "ckpt.pt.1.abcdefgh.tmp": True,                    # not hidden: not ours
                "user.txt": True,
            }
            for name in names:
                (tmp_path / name).write_bytes(b"partial")
            old = {f".ckpt.pt.{live.pid}.oldlive1.tmp": False, ".ckpt.pt.oldold12.tmp": False,
                   ".notes.abcdefgh.tmp": True, "user-old.txt": True}  # old-style only for the same name
            for name in old:
                (tmp_path / name).write_bytes(b"partial")
                stamp = time.time() - STALE_AFTER_S - 60
                os.utime(tmp_path / name, (stamp, stamp))
            atomic_write(tmp_path / "ckpt.pt", b"done")
            kept = {p.name for p in tmp_path.iterdir()}
            assert kept == {n for n, keep in {**names, **old}.items() if keep} | {"ckpt.pt"}
        finally:
            live.kill()
            live.wait()

    def test_a_symlink_named_like_ours_is_never_followed_or_removed(self, tmp_path):
        victim = tmp_path / "victim.txt"
        victim.write_text("precious")
        link = tmp_path / f".ckpt.pt.{dead_pid()}.abcdefgh.tmp"
        link.symlink_to(victim)
        assert clean_stale_temp_files(tmp_path, "ckpt.pt") == []
        assert link.is_symlink() and victim.read_text() == "precious"

    @settings(max_examples=60, deadline=None)
    @given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=30)
           .filter(lambda n: n not in (".", "..") and not n.endswith(".tmp")))
    def test_files_not_ending_in_tmp_are_never_removed(self, name):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(b"user data")
            os.utime(path, (0, 0))
            assert clean_stale_temp_files(tmp, name, now=time.time()) == []
            assert path.read_bytes() == b"user data"

    def test_writer_killed_mid_write_leaves_a_temp_file_the_next_save_removes(self, tmp_path):
        """A real process killed with SIGKILL half-way: its partial temp file stays, then goes on the next save."""
        target = tmp_path / "big.pt"
        target.write_bytes(b"previous")
        child = textwrap.dedent(f"""
            import sys, time
            import workbench.files as f
            def half_then_hang(fh, data):
                fh.write(data[: len(data) // 2]); fh.flush()
                print("written", flush=True)
                time.sleep(120)
            f._write_bytes = half_then_hang
            f.atomic_write({str(target)!r}, b"x" * 1_000_000)
        """)
        proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            assert proc.stdout.readline().strip() == "written"
            left = temp_files(tmp_path)
            assert left and left[0].startswith(f".big.pt.{proc.pid}.")
            assert (tmp_path / left[0]).stat().st_size == 500_000
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert target.read_bytes() == b"previous" and temp_files(tmp_path) == left
        atomic_write(target, b"next")
        assert temp_files(tmp_path) == [] and target.read_bytes() == b"next"


# ------------------------------------------------------------------------------ the policy panel's Save
class TestPolicyPanelSave:
    """Save keeps a loaded checkpoint's metadata, never overwrites silently, never writes assets/."""

    ASSET = REPO / "assets" / "agents" / "cartpole_novel.pt"

    @staticmethod
    def panel(folder: Path):
        from widgets.policy_panel import PolicyPanel
        from workbench.envs import EnvSpec
        from workbench.policy import PolicySpec

        return PolicyPanel(PolicySpec(hidden_size=4), EnvSpec("CartPole-v1", hide_velocity=True),
                           user_folder=folder)

    def test_default_path_is_a_fresh_name_in_the_user_folder(self, tmp_path):
        from widgets.policy_panel import USER_FOLDER, PolicyPanel
        from workbench.files import SHIPPED_ASSETS

        assert Path(self.panel(tmp_path).path.value) == tmp_path / "policy.pt"
        (tmp_path / "policy.pt").write_bytes(b"mine")
        assert Path(self.panel(tmp_path).path.value) == tmp_path / "policy-1.pt"
        default = Path(PolicyPanel().path.value)
        assert default.parent == USER_FOLDER and SHIPPED_ASSETS not in default.parents

    def test_load_asset_then_save_keeps_the_asset_and_its_metadata(self, tmp_path):
        """The issue's steps: Load the shipped checkpoint, Save. The asset is untouched even with the
        overwrite tick; the proposed copy in the user folder keeps env_id and the training metadata."""
        from workbench.checkpoints import checkpoint_metadata

        before, meta = self.ASSET.read_bytes(), checkpoint_metadata(self.ASSET)
        panel = self.panel(tmp_path)
        panel.path.value = str(self.ASSET)
        panel.load_button.click()
        assert panel.last_error is None, panel.message
        assert panel.built.metadata == meta
        for tick in (False, True):
            panel.overwrite.value = tick
            panel.save_button.click()
            assert "shipped checkpoint under assets/: it is never overwritten" in panel.message
            assert panel.overwrite.layout.display == "none" and panel.save_as_button.layout.display == ""
            assert self.ASSET.read_bytes() == before
        assert panel.proposed == tmp_path / "cartpole_novel.pt" and str(panel.proposed) in panel.message
        panel.save_as_button.click()
        assert panel.last_error is None and panel.message.startswith("Saved to"), panel.message
        saved = checkpoint_metadata(tmp_path / "cartpole_novel.pt")
        assert {k: saved[k] for k in meta} == meta and saved["env_id"] == "workbench/CartPoleNoVel-v1"
        assert saved["source"] == str(self.ASSET)
        assert saved["panel_env"] == {"env_id": "workbench/CartPoleNoVel-v1", "hide_velocity": False}
        assert self.ASSET.read_bytes() == before

    def test_symlink_to_an_asset_is_refused(self, tmp_path):
        link = tmp_path / "link.pt"
        link.symlink_to(self.ASSET)
        panel = self.panel(tmp_path)
        panel.build_button.click()
        panel.path.value = str(link)
        panel.overwrite.value = True
        panel.save_button.click()
        assert "never overwritten" in panel.message and link.is_symlink()

    def test_existing_file_needs_the_confirm(self, tmp_path):
        """Save on an existing file proposes NAME-1.pt and writes nothing; only the tick overwrites, once."""
        mine = tmp_path / "p.pt"
        mine.write_bytes(b"a file the user made")
        panel = self.panel(tmp_path)
        panel.build_button.click()
        panel.path.value = str(mine)
        panel.save_button.click()
        assert panel.message.startswith(f"{mine} exists: nothing was saved") and panel.last_error is None
        assert mine.read_bytes() == b"a file the user made"
        assert panel.proposed == tmp_path / "p-1.pt" and panel.save_as_button.description == "Save as p-1.pt"
        assert panel.overwrite.layout.display == "" and not panel.overwrite.value
        panel.save_as_button.click()
        assert (tmp_path / "p-1.pt").is_file() and panel.path.value == str(tmp_path / "p-1.pt")
        assert mine.read_bytes() == b"a file the user made"
        assert panel.overwrite.layout.display == "none" and panel.proposed is None
        panel.path.value = str(mine)
        panel.save_button.click()
        panel.overwrite.value = True
        panel.path.value = str(tmp_path / "p-1.pt")   # a new path forgets the confirm
        assert not panel.overwrite.value
        panel.path.value = str(mine)
        panel.save_button.click()
        panel.overwrite.value = True
        panel.save_button.click()
        assert panel.message.startswith("Saved to") and mine.read_bytes().startswith(b"PK")
        assert not panel.overwrite.value  # one confirm, one overwrite
        panel.save_button.click()
        assert "exists: nothing was saved" in panel.message

    def test_built_policy_round_trip_keeps_the_env(self, tmp_path):
        from workbench.checkpoints import checkpoint_metadata

        panel = self.panel(tmp_path)
        panel.build_button.click()
        panel.save_button.click()
        assert checkpoint_metadata(tmp_path / "policy.pt") == {
            "source": "built", "panel_env": {"env_id": "CartPole-v1", "hide_velocity": True}}


def test_export_refuses_a_fifo_and_writes_through_a_symlink(tmp_path):
    """Figures go through the same atomic_write: a FIFO stays a FIFO, a symlink's target gets the figure."""
    import plotly.graph_objects as go

    import workbench.export as X
    from workbench.embedded_metadata import read_metadata

    fig = go.Figure(go.Scatter(y=[1, 2]))
    os.mkfifo(tmp_path / "f.json")
    with pytest.raises(X.ExportError, match=r"^export: expected a regular file path; '.*f\.json' is a FIFO; nothing"):
        X.export_figure(fig, tmp_path / "f.json")
    assert stat.S_ISFIFO((tmp_path / "f.json").stat().st_mode)
    (tmp_path / "store").mkdir()
    (tmp_path / "g.json").symlink_to(tmp_path / "store" / "real.json")
    X.export_figure(fig, tmp_path / "g.json")
    assert (tmp_path / "g.json").is_symlink() and read_metadata(tmp_path / "store" / "real.json")
