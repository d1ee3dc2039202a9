"""IKSolver (in memory and loaded from a run directory) and the `python -m avips_jax.solve` CLI.

The models are untrained (initial network of a tiny config): the tests check the plumbing
(shapes, clamping, refinement, loading, errors); refinement accuracy is tested in test_refine.py.
"""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import checkpoint, fit, hardware, networks, rotations, solve, train
from avips_jax import model as model_lib
from avips_jax.config import default_config
from avips_jax.refine import refine
from avips_jax.settings import Settings
from avips_jax.solver import IKSolver
from avips_jax.targets import WorkspaceError, make_target

pytestmark = pytest.mark.usefixtures("fast_compiles")

TARGETS = np.array([[0.4, 0.1, 0.6], [0.3, -0.3, 0.3]])


def _config(context="position"):
    c = default_config()
    c.target.name = "ik"
    c.target.kwargs.robot_name = "panda"
    c.target.kwargs.context = context
    c.model.num_components = 2
    c.model.initial_components = 2
    c.model.component_hidden = (8,)
    c.model.gate_hidden = (8,)
    return c


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with config.json and the initial state saved as checkpoint 0."""
    config = _config()
    target, module, _, state, _ = fit.build(config)
    workdir = tmp_path_factory.mktemp("panda_run")
    checkpoint.save_config(workdir, config)
    checkpoint.save(workdir, state)
    solver = IKSolver(target, model_lib.AmortizedGMM.from_train_state(state, module, 3), config)
    return workdir, solver


@pytest.fixture(scope="module")
def pose_solver():
    config = _config("pose")
    target = make_target("ik", **config.target.kwargs.to_dict())
    module = train.make_model(Settings.from_config(config).network, target)
    variables = networks.init_gmm_network(jax.random.key(0), module, target.context_dim)
    model = model_lib.AmortizedGMM(module, variables, jnp.ones(2, bool), target.context_dim)
    return IKSolver(target, model)


def test_repr_is_one_short_line(run_dir):
    _, solver = run_dir
    text = repr(solver)
    assert text.startswith("IKSolver(robot='panda', joints=7, context='position', model=")
    assert "\n" not in text and len(text) < 200 and "components active" in text


def test_a_request_that_cannot_fit_in_memory_is_refused_up_front(run_dir):
    _, solver = run_dir
    free = hardware.available_memory_bytes()
    assert free is not None and free > 0
    n = int(2 * free // solver.memory_estimate_bytes(1, 1, refine=True)) + 1
    with pytest.raises(ValueError, match=r"n=\d+ for 1 target\(s\) with refinement needs about "):
        solver.sample(jax.random.key(0), TARGETS[0], n=n, refine=True)
    assert solver.memory_estimate_bytes(2, 250, refine=True) < free  # the usual request fits


def test_load_gives_the_in_memory_solver(run_dir):
    workdir, solver = run_dir
    loaded = IKSolver.load(workdir)
    assert loaded.robot is solver.robot and loaded.target == solver.target
    assert loaded.config.target.kwargs.robot_name == "panda"
    key = jax.random.key(1)
    np.testing.assert_array_equal(loaded.sample(key, TARGETS, 8), solver.sample(key, TARGETS, 8))


def test_sample_shapes_dtype_and_clamping(run_dir):
    _, solver = run_dir
    key = jax.random.key(2)
    q = solver.sample(key, TARGETS, n=16)
    assert q.shape == (2, 16, 7) and q.dtype == jnp.float32
    assert np.all((q >= solver.robot.lower) & (q <= solver.robot.upper))
    raw = solver.sample(key, TARGETS, n=16, clamp=False)
    np.testing.assert_array_equal(raw, solver.model.sample(key, jnp.asarray(TARGETS), 16))
    np.testing.assert_allclose(q, np.clip(raw, solver.robot.lower, solver.robot.upper), atol=0)
    assert np.any(raw != q)  # the untrained model's samples do leave the limits
    one = solver.sample(key, TARGETS[0], n=16)  # a single (3,) target -> (n, dof)
    assert one.shape == (16, 7)
    assert solver.sample(0, TARGETS[0], n=16).shape == (16, 7)  # an int seed works too


def test_refined_samples_are_the_refined_raw_samples(run_dir):
    _, solver = run_dir
    key = jax.random.key(3)
    q0 = solver.sample(key, TARGETS, n=16)
    # A few LM steps from the same raw samples (longer runs amplify float32 rounding).
    q2 = solver.sample(key, TARGETS, n=16, refine=True, num_iterations=2)
    np.testing.assert_allclose(q2, refine(solver.robot, q0, TARGETS[:, None], num_iterations=2),
                               atol=1e-4)  # fmt: skip
    q = solver.sample(key, TARGETS, n=16, refine=True)
    before = solver.target.position_error(q0, TARGETS[:, None])
    after = solver.target.position_error(q, TARGETS[:, None])
    assert np.all(after <= before + 1e-6)
    assert np.median(after) < 1e-4  # most random starts converge in 30 LM iterations
    assert np.all((q >= solver.robot.lower) & (q <= solver.robot.upper))


def test_latent_scale_samples_the_wider_model(run_dir):
    _, solver = run_dir
    key = jax.random.key(6)
    wide = solver.sample(key, TARGETS, n=16, clamp=False, latent_scale=2.0)
    expected = solver.model.with_latent_scale(2.0).sample(key, jnp.asarray(TARGETS), 16)
    np.testing.assert_array_equal(wide, expected)
    with pytest.raises(ValueError, match="latent_scale"):
        solver.sample(key, TARGETS, n=16, latent_scale=0.0)


def test_sample_is_one_compiled_call(run_dir):
    from avips_jax import solver as solver_lib

    _, solver = run_dir
    solver.sample(jax.random.key(4), TARGETS, n=4)
    size = solver_lib._sample._cache_size()
    solver.sample(jax.random.key(5), TARGETS + 0.01, n=4)
    assert solver_lib._sample._cache_size() == size


def test_pose_solver_refines_orientation_too(pose_solver):
    target = pose_solver.target
    c = np.array(target.contexts_from_joints(np.full(7, 0.1)))
    c[2] -= 0.05
    key = jax.random.key(6)
    q0 = pose_solver.sample(key, c, n=8)
    assert q0.shape == (8, 7)
    q2 = pose_solver.sample(key, c, n=8, refine=True, num_iterations=2)
    rot = rotations.quaternion_to_matrix(c[3:])
    np.testing.assert_allclose(q2, refine(pose_solver.robot, q0, c[:3], rot, num_iterations=2),
                               atol=1e-4)  # fmt: skip
    q = pose_solver.sample(key, c, n=8, refine=True)
    # LM never increases ||(position error, rotation angle)||; from the untrained model's random
    # starts some samples end in local minima at a joint limit, others solve the pose exactly.
    cost0 = target.position_error(q0, c) ** 2 + target.orientation_error(q0, c) ** 2
    cost = target.position_error(q, c) ** 2 + target.orientation_error(q, c) ** 2
    assert np.all(cost <= cost0 + 1e-6)
    solved = (target.position_error(q, c) < 1e-4) & (target.orientation_error(q, c) < 1.75e-3)
    assert np.sum(solved) >= 1 and np.all(target.orientation_error(q0, c) > 1e-2)
    with pytest.raises(ValueError, match=r"shape \(T, 7\) or \(7,\) for a model trained on pose"):
        pose_solver.sample(key, TARGETS, n=8)
    with pytest.raises(ValueError, match="unit quaternion"):
        pose_solver.sample(key, [0.4, 0.1, 0.6, 1.0, 1.0, 0.0, 0.0], n=8)


def test_bad_targets_raise_clear_errors(run_dir):
    _, solver = run_dir
    key = jax.random.key(7)
    with pytest.raises(ValueError, match=r"shape \(T, 3\) or \(3,\).*got \(2, 4\)"):
        solver.sample(key, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        solver.sample(key, [0.4, np.nan, 0.6])
    with pytest.raises(WorkspaceError, match="outside the workspace of 'panda'"):
        solver.sample(key, [[0.4, 0.1, 0.6], [0.0, 0.0, 2.0]])
    with pytest.raises(ValueError, match="numeric"):
        solver.sample(key, ["a", "b", "c"])
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        solver.sample(key, TARGETS, n=0)


def test_constructor_rejects_non_ik_targets(run_dir):
    _, solver = run_dir
    with pytest.raises(ValueError, match="needs an IK target"):
        IKSolver(make_target("planar"), solver.model)
    with pytest.raises(ValueError, match="does not fit target"):
        IKSolver(make_target("ik", robot_name="valkyrie"), solver.model)


def test_a_model_with_non_finite_weights_is_refused(run_dir):
    _, solver = run_dir
    variables = jax.tree.map(lambda x: x, solver.model.variables)
    variables["params"] = jax.tree.map(lambda x: x * jnp.nan, variables["params"])
    broken = dataclasses.replace(solver.model, variables=variables)
    with pytest.raises(ValueError, match="NaN or infinity .*diverged"):
        IKSolver(solver.target, broken)


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="does not exist"):
        IKSolver.load(tmp_path / "missing")
    checkpoint.save_config(tmp_path, _config())
    with pytest.raises(checkpoint.CheckpointNotFoundError, match="no checkpoint in"):
        IKSolver.load(tmp_path)


def test_cli_prints_a_table(run_dir, capsys):
    workdir, _ = run_dir
    argv = ["--workdir", str(workdir), "-n", "16", "--refine", "--seed", "3"]
    argv += ["--target", "0.4", "0.1", "0.6", "--target", "0.3", "-0.3", "0.3"]
    assert solve.main(argv) == 0  # the shapes of test_refined_...: no new compilation
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"run {workdir} (panda, position contexts, refined samples)")
    assert out[1] == "target [0.4, 0.1, 0.6]" and out[20] == "target [ 0.3, -0.3,  0.3]"
    header = ["#", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "pos_err_mm", "reached"]
    assert out[2].split() == header
    rows = [line.split() for line in out[3:19]]
    assert [int(r[0]) for r in rows] == list(range(16)) and all(len(r) == 10 for r in rows)
    errors_mm = np.array([float(r[-2]) for r in rows])
    assert np.median(errors_mm) < 0.1
    reached = [r[-1] for r in rows]
    assert reached == ["yes" if e <= 1.0 else "NO" for e in errors_mm]
    assert out[19].startswith("position error (mm): median") and out[19].endswith(
        f"; {reached.count('yes')} of 16 samples reach the target (within 1 mm)"
    )


def test_cli_exits_2_naming_a_target_no_sample_reached(run_dir, capsys):
    workdir, _ = run_dir  # an untrained model: its raw samples miss by far more than 1 cm
    argv = ["--workdir", str(workdir), "-n", "4", "--target", "0.4", "0.1", "0.6"]
    assert solve.main(argv) == 2
    captured = capsys.readouterr()
    assert "0 of 4 samples reach the target (within 10 mm)" in captured.out
    assert captured.err.startswith(
        "error: no sample reached target(s) [0.4, 0.1, 0.6] (try --refine)"
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "2.0", "0.1", "0.6"], "error: target position [2.0, 0.1, 0.6] is outside"),
        (["--target", "0.4", "0.1"], "error: --target needs 3 values"),
        (["--target", "0.4", "nan", "0.6"], "error: ik: contexts hold NaN"),
        (["--target", "0.4", "0.1", "0.6", "--latent-scale", "-1"], "error: latent_scale must"),
    ],
)
def test_cli_bad_targets_exit_1_with_one_line(run_dir, capsys, extra, message):
    workdir, _ = run_dir
    assert solve.main(["--workdir", str(workdir)] + extra) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_as_a_module_for_a_missing_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "avips_jax.solve", f"--workdir={tmp_path / 'nope'}",
         "--target", "0.4", "0.1", "0.6"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: run directory {tmp_path / 'nope'} does not exist"
    assert result.stdout == ""
    with pytest.raises(SystemExit) as exit_info:
        solve.main(["--workdir", str(tmp_path)])  # argparse: --target is required
    assert exit_info.value.code == 2
