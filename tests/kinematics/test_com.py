"""Whole-body centre of mass from the URDF inertials, against pinocchio and docs/robots.md."""

import jax
import numpy as np
import pinocchio as pin
import pytest

from avips_jax import kinematics
from tests.kinematics import references

# docs/robots.md §2.4: TALOS CoM at q = 0, fixed base at identity, in base_link (pinocchio's
# fixed-base centerOfMass, which leaves out the mass on its universe joint: base_link,
# 13.5381 kg).
TALOS_COM_Q0_ROBOTS_MD = (-0.013777657, -0.000031589, -0.169815628)
TALOS_TOTAL_MASS = 90.272192


def _reduced_pin_model(robot):
    """The URDF in pinocchio with every joint outside robot.joint_names locked at 0."""
    model = pin.buildModelFromUrdf(str(kinematics.urdf_path(robot.name)))
    lock = [i for i, n in enumerate(model.names) if i > 0 and n not in robot.joint_names]
    reduced = pin.buildReducedModel(model, lock, pin.neutral(model))
    assert reduced.nq == robot.dof
    index = [reduced.joints[reduced.getJointId(j)].idx_q for j in robot.joint_names]
    return reduced, index


@pytest.mark.parametrize("name", ["talos", "panda"])
def test_com_matches_pinocchio_reduced_model(name):
    robot = kinematics.load_robot(name)
    model, index = _reduced_pin_model(robot)
    data = model.createData()
    q = references.random_q(robot, 50, seed=7)
    with jax.enable_x64(True):
        com = np.asarray(robot.center_of_mass(q, include_root=False))
    assert com.shape == (50, 3) and com.dtype == np.float64
    for qi, ci in zip(q, com, strict=True):
        full = np.zeros(model.nq)
        full[index] = qi
        np.testing.assert_allclose(ci, pin.centerOfMass(model, data, full), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["talos", "panda"])
def test_whole_body_com_matches_pinocchio_free_flyer(name):
    """With a free-flyer base at identity, pinocchio counts the root link's mass too."""
    robot = kinematics.load_robot(name)
    ref = references.pin_reference(name, free_flyer=True)
    q = references.random_q(robot, 20, seed=8)
    with jax.enable_x64(True):
        com = np.asarray(robot.center_of_mass(q))
    for qi, ci in zip(q, com, strict=True):
        expected = pin.centerOfMass(ref.model, ref.data, ref.config(qi))
        np.testing.assert_allclose(ci, expected, rtol=0, atol=1e-12)
    assert robot.total_mass == pytest.approx(ref.data.mass[0], abs=1e-12)


def test_talos_com_values_at_zero():
    robot = kinematics.load_robot("talos")
    assert robot.total_mass == pytest.approx(TALOS_TOTAL_MASS, abs=1e-9)
    with jax.enable_x64(True):
        pinocchio_convention = np.asarray(robot.center_of_mass(np.zeros(28), include_root=False))
        whole_body = np.asarray(robot.center_of_mass(np.zeros(28)))
    np.testing.assert_allclose(pinocchio_convention, TALOS_COM_Q0_ROBOTS_MD, rtol=0, atol=1e-9)
    # The whole body adds base_link (13.5381 kg at (-0.08222, 0.00838, -0.07261) in base_link).
    base_mass, base_com = 13.5381, np.array([-0.08222, 0.00838, -0.07261])
    expected = (
        (TALOS_TOTAL_MASS - base_mass) * np.array(TALOS_COM_Q0_ROBOTS_MD) + base_mass * base_com
    ) / TALOS_TOTAL_MASS
    np.testing.assert_allclose(whole_body, expected, rtol=0, atol=1e-8)


def test_com_batched_float32():
    robot = kinematics.load_robot("talos")
    q = references.random_q(robot, 15, seed=9).reshape(3, 5, 28)
    com32 = robot.center_of_mass(q.astype(np.float32))
    assert com32.shape == (3, 5, 3) and com32.dtype == np.float32
    with jax.enable_x64(True):
        com64 = np.asarray(robot.center_of_mass(q))
    np.testing.assert_allclose(np.asarray(com32), com64, rtol=0, atol=1e-6)
