"""IK on a robot file of your own: `experiments/configs/robot.py`, the chain flags, refusals before
anything is written, and run directories that keep their own copy of the robot file."""

import hashlib
import json
import logging
import shutil

import numpy as np
import pytest

from avips_jax import checkpoint, presets, robot_snapshot, run
from experiments.configs import robot
from tests.experiments import cli
from tests.targets.test_ik_robot import ARM, NO_MOTION

pytestmark = pytest.mark.usefixtures("fast_compiles")

TINY = (
    "model.num_components=3",
    "model.initial_components=2",
    "model.component_hidden=(16,)",
    "model.gate_hidden=(8,)",
    "train.num_steps=8",
    "train.batch_contexts=8",
    "train.samples_per_component=2",
    "train.log_every=4",
    "train.log_samples=4",
    "train.checkpoint_every=4",
    "components.check_every=4",
    "components.add_every=4",
)


def _config(path, *overrides):
    return presets.apply_overrides(robot.get_config(f"{path},quick"), TINY + overrides)


@pytest.fixture
def arm(tmp_path):
    path = tmp_path / "arm4.urdf"
    path.write_text(ARM)
    return path


def test_the_config_stores_an_absolute_path_and_every_chain_key(arm, monkeypatch):
    monkeypatch.chdir(arm.parent)
    c = robot.get_config("arm4.urdf,precise,vanilla_gmm")
    assert c.target.kwargs.robot_name == str(arm)
    assert c.method == "vanilla_gmm" and c.train.num_steps == 30_000
    assert {"root", "tip", "joint_names", "locked", "context", "rotation_std"} <= set(
        c.target.kwargs
    )
    with pytest.raises(ValueError, match="robot.py needs the robot file"):
        robot.get_config("")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ((), "3 leaf links below 'base'"),
        (("target.kwargs.tip=camera",), "no movable joint between root 'base' and tip 'camera'"),
        (("target.kwargs.tip=l1", "target.kwargs.root=l3"), "not connected to root link 'l3'"),
        (("target.kwargs.tip=hand", "target.kwargs.joint_names=j1,j9"), "j9"),
    ],
)
def test_a_bad_chain_is_refused_before_anything_is_written(arm, tmp_path, overrides, message):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        run.train_and_checkpoint(_config(arm, *overrides), workdir, progress=False)
    assert not workdir.exists()


def test_the_cli_exits_non_zero_naming_the_problem(tmp_path):
    statue = tmp_path / "statue.urdf"
    statue.write_text(NO_MOTION)
    workdir = tmp_path / "run"
    out = cli.run_module(
        "experiments.train",
        "--noprogress",
        f"--config=experiments/configs/robot.py:{statue}",
        f"--workdir={workdir}",
    )
    assert out.returncode == 1, out.stderr
    assert "no movable joint between root 'base' and tip 'head'" in out.stderr
    assert not workdir.exists()


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A tiny run on arm4.urdf (4 steps); the original file is then edited (the first link 1 m
    longer) and the run relaunched (it is complete: the relaunch builds its target, from the
    copy, and stops). Returns (original, workdir, the log of the relaunch)."""
    home = tmp_path_factory.mktemp("own_robot")
    arm = home / "arm4.urdf"
    arm.write_text(ARM)
    workdir = home / "run"
    config = _config(arm, "target.kwargs.tip=hand", "train.num_steps=4")
    run.train_and_checkpoint(config, workdir, progress=False)
    arm.write_text(ARM.replace('<origin xyz="0 0 0.1"/>', '<origin xyz="0 0 1.1"/>'))
    logger = logging.getLogger("avips_jax.robot_snapshot")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        assert run.train_and_checkpoint(config, workdir, progress=False) is None
    finally:
        logger.removeHandler(handler)
    return arm, workdir, "\n".join(r.getMessage() for r in records)


def test_a_run_keeps_and_uses_its_copy_of_the_robot_file(resumed_run, caplog):
    arm, workdir, resume_log = resumed_run
    manifest = json.loads((workdir / "robot" / robot_snapshot.MANIFEST).read_text())
    assert manifest == {
        "original": str(arm),
        "sha256": hashlib.sha256(ARM.encode()).hexdigest(),
        "file": "arm4.urdf",
    }
    assert (workdir / "robot" / "arm4.urdf").read_text() == ARM
    # The original was edited before the relaunch: the relaunch said so (and read the copy).
    assert "has changed since the run started" in resume_log
    trained = checkpoint.load_model(workdir)
    assert trained.target.robot_name == str((workdir / "robot" / "arm4.urdf").absolute())
    q = np.zeros((1, 4))
    z = float(np.asarray(trained.target.robot.end_effector_pose(q))[0, 2, 3])
    assert z == pytest.approx(0.3, abs=1e-6)  # 0.1 + 0.2 of the copy, not 1.3 of the edit


def test_a_moved_original_still_loads_from_the_copy(resumed_run, tmp_path, caplog):
    arm, workdir, _ = resumed_run
    moved = shutil.copytree(workdir, tmp_path / "run")
    arm.rename(tmp_path / "elsewhere.urdf")
    try:
        with caplog.at_level(logging.WARNING, logger="avips_jax.robot_snapshot"):
            assert checkpoint.load_model(moved).target.dim == 4
    finally:
        (tmp_path / "elsewhere.urdf").rename(arm)
    assert "is gone; using the run's copy" in caplog.text


def test_a_damaged_copy_is_refused(resumed_run, tmp_path):
    _, workdir, _ = resumed_run
    damaged = shutil.copytree(workdir, tmp_path / "run")
    (damaged / "robot" / "arm4.urdf").write_text(ARM + "<!-- edited -->")
    with pytest.raises(ValueError, match="does not match its sha256"):
        checkpoint.load_model(damaged)
