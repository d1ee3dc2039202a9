"""Quaternion / matrix conversions, the log map and the geodesic angle against scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from avips_jax import rotations

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _random_rotations(n, seed=0):
    rots = Rotation.random(n, random_state=seed)
    # Add the hard cases: identity, half turns about each axis, near-half turns, tiny turns.
    extra = Rotation.from_rotvec(
        [[0, 0, 0], [np.pi, 0, 0], [0, np.pi, 0], [0, 0, np.pi], [0, 0, np.pi - 1e-7],
         [1e-9, 0, 0], [np.pi / np.sqrt(2), -np.pi / np.sqrt(2), 0]]
    )  # fmt: skip
    return Rotation.concatenate([rots, extra])


def _scipy_wxyz(rots):
    xyzw = rots.as_quat()
    return np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)


def _same_up_to_sign(a, b, atol):
    sign = np.sign(np.sum(a * b, axis=-1, keepdims=True))
    np.testing.assert_allclose(a, sign * b, atol=atol)


def test_quaternion_to_matrix_matches_scipy():
    rots = _random_rotations(200)
    with jax.enable_x64(True):
        got = np.asarray(rotations.quaternion_to_matrix(_scipy_wxyz(rots)))
        # Not normalised on input: a scaled quaternion is the same rotation.
        scaled = np.asarray(rotations.quaternion_to_matrix(3.0 * _scipy_wxyz(rots)))
    np.testing.assert_allclose(got, rots.as_matrix(), atol=1e-14)
    np.testing.assert_allclose(scaled, rots.as_matrix(), atol=1e-14)


def test_matrix_to_quaternion_matches_scipy_with_w_nonnegative():
    rots = _random_rotations(500, seed=1)
    with jax.enable_x64(True):
        quat = np.asarray(rotations.matrix_to_quaternion(rots.as_matrix()))
    assert quat.shape == (len(rots), 4)
    assert np.all(quat[:, 0] >= 0)
    np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0, atol=1e-15)
    _same_up_to_sign(quat, _scipy_wxyz(rots), atol=1e-14)
    # Ties at w = 0: the first nonzero of (x, y, z) is positive.
    half_turns = quat[np.abs(quat[:, 0]) < 1e-12]
    assert len(half_turns) >= 3
    first = [row[np.flatnonzero(np.abs(row) > 1e-12)[0]] for row in half_turns]
    assert np.all(np.array(first) > 0)


def test_matrix_to_quaternion_float32_round_trip():
    rots = _random_rotations(300, seed=2)
    mats = jnp.asarray(rots.as_matrix(), jnp.float32)
    quat = rotations.matrix_to_quaternion(mats)
    assert quat.dtype == jnp.float32
    np.testing.assert_allclose(rotations.quaternion_to_matrix(quat), mats, atol=2e-6)


def test_canonical_quaternion_picks_w_positive():
    quat = jnp.array([[-0.5, 0.5, -0.5, 0.5], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, -2.0]])
    expected = [[0.5, -0.5, 0.5, -0.5], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]
    np.testing.assert_allclose(rotations.canonical_quaternion(quat), expected)


def test_rotation_vector_matches_scipy():
    rots = _random_rotations(300, seed=3)
    with jax.enable_x64(True):
        got = np.asarray(rotations.rotation_vector(rots.as_matrix()))
    ref = rots.as_rotvec()
    # At exactly pi, r and -r are the same rotation.
    near_pi = np.linalg.norm(ref, axis=1) > np.pi - 1e-6
    np.testing.assert_allclose(got[~near_pi], ref[~near_pi], atol=1e-12)
    _same_up_to_sign(got[near_pi], ref[near_pi], atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), rots.magnitude(), atol=1e-7)


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-14), (np.float32, 2e-6)])
def test_geodesic_angle_exact_on_known_rotations(dtype, atol):
    angles = np.array([0.0, 1e-6, 1e-3, 0.3, 1.0, 2.5, np.pi - 1e-3, np.pi])
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    base = Rotation.random(1, random_state=4)
    rot_a = np.repeat(base.as_matrix(), len(angles), axis=0)
    rot_b = (base * Rotation.from_rotvec(angles[:, None] * axis)).as_matrix()
    with jax.enable_x64(dtype == np.float64):
        got = np.asarray(rotations.geodesic_angle(rot_a.astype(dtype), rot_b.astype(dtype)))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, angles, atol=atol, rtol=0)
    # Small angles keep relative accuracy (arccos of the trace would lose half the digits).
    if dtype == np.float64:
        np.testing.assert_allclose(got[1], 1e-6, rtol=1e-8)


def test_geodesic_angle_gradient_finite_at_identity():
    eye = jnp.eye(3)
    grad = jax.grad(lambda r: rotations.geodesic_angle(eye, r))(eye)
    assert np.all(np.isfinite(grad))


def test_shape_errors_name_the_shape():
    with pytest.raises(ValueError, match=r"quat must have shape \(\.\.\., 4\), got \(3,\)"):
        rotations.quaternion_to_matrix(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"rot must have shape"):
        rotations.matrix_to_quaternion(jnp.zeros((4, 4)))
