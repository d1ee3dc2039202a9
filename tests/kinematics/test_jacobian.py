"""Jacobians (jax.jacfwd of the FK) against central finite differences and pinocchio."""

import jax
import numpy as np
import pinocchio as pin
import pytest

from avips_jax import kinematics
from tests.kinematics import references


def _finite_difference_jacobian(robot, q, link, h=1e-6):
    """(6, dof): d position, and angular velocity vee(dR Rᵀ), by central differences."""
    columns = []
    base = np.asarray(robot.link_poses(q, [link]))[0]
    for i in range(robot.dof):
        step = np.zeros(robot.dof)
        step[i] = h
        plus = np.asarray(robot.link_poses(q + step, [link]))[0]
        minus = np.asarray(robot.link_poses(q - step, [link]))[0]
        d = (plus - minus) / (2 * h)
        w = d[:3, :3] @ base[:3, :3].T
        angular = 0.5 * np.array([w[2, 1] - w[1, 2], w[0, 2] - w[2, 0], w[1, 0] - w[0, 1]])
        columns.append(np.concatenate([d[:3, 3], angular]))
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("name, link", [("panda", "panda_hand"), ("talos", "right_sole_link"),
                                        ("atlas", "l_hand")])  # fmt: skip
def test_jacobian_matches_finite_differences(name, link):
    robot = kinematics.load_robot(name)
    q = references.random_q(robot, 3, seed=10)
    with jax.enable_x64(True):
        jac = np.asarray(robot.jacobian(q, link))
        assert jac.shape == (3, 6, robot.dof)
        for qi, ji in zip(q, jac, strict=True):
            np.testing.assert_allclose(ji, _finite_difference_jacobian(robot, qi, link), atol=1e-8)


def test_jacobian_matches_pinocchio_local_world_aligned():
    robot = kinematics.load_robot("panda")
    ref = references.pin_reference("panda")
    frame = ref.model.getFrameId("panda_hand")
    q = references.random_q(robot, 5, seed=11)
    with jax.enable_x64(True):
        jac = np.asarray(robot.jacobian(q))
    for qi, ji in zip(q, jac, strict=True):
        full = ref.config(qi)
        expected = pin.computeFrameJacobian(
            ref.model, ref.data, full, frame, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
        )
        np.testing.assert_allclose(ji, expected[:, ref.index], atol=1e-12)


def test_position_jacobian_batched_and_sparse():
    robot = kinematics.load_robot("talos")
    q = references.random_q(robot, 6, seed=12).reshape(2, 3, 28)
    jac = np.asarray(robot.jacobian(q, "left_sole_link", orientation=False))
    assert jac.shape == (2, 3, 3, 28)
    leg = [i for i, n in enumerate(robot.joint_names) if n.startswith("leg_left")]
    others = np.setdiff1d(np.arange(28), leg)
    np.testing.assert_array_equal(jac[..., others], 0.0)
    assert np.all(np.abs(jac[..., leg]).max(axis=(-1, -2)) > 0.1)
