"""Tests of the conditional planar n-link IK target."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats

from avips_jax import targets

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_forward_kinematics_hand_computed():
    three = targets.make_target("planar", num_links=3, min_radius=1.0, max_radius=2.0)
    # Cumulative angles (pi/2, 0, 0): one link up, then two links along +x.
    theta = jnp.array([[math.pi / 2, -math.pi / 2, 0.0], [0.0, math.pi, 0.0]])
    np.testing.assert_allclose(three.end_effector(theta), [[2.0, 1.0], [-1.0, 0.0]], atol=1e-6)
    half = targets.PlanarIK(num_links=3, link_length=0.5, min_radius=1.0, max_radius=1.5)
    np.testing.assert_allclose(half.end_effector(theta[0]), [1.0, 0.5], atol=1e-6)
    joints = half.link_positions(theta[0])
    np.testing.assert_allclose(joints, [[0, 0], [0, 0.5], [0.5, 0.5], [1.0, 0.5]], atol=1e-6)
    ten = targets.make_target("planar")
    np.testing.assert_allclose(ten.end_effector(jnp.zeros(10)), [10.0, 0.0], atol=1e-6)


def test_link_positions_agree_with_end_effector():
    target = targets.make_target("planar", link_length=0.7, max_radius=7.0)
    theta = jax.random.normal(jax.random.key(0), (4, 3, 10))
    joints = target.link_positions(theta)
    assert joints.shape == (4, 3, 11, 2)
    np.testing.assert_allclose(joints[..., -1, :], target.end_effector(theta), atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(jnp.diff(joints, axis=-2), axis=-1), 0.7, rtol=1e-5)


def _reference_log_prob(theta, c, stds, sigma=0.01):
    phi = np.cumsum(theta)
    p = np.array([np.cos(phi).sum(), np.sin(phi).sum()])
    return stats.norm.logpdf(theta, 0, stds).sum() + stats.norm.logpdf(p, c, sigma).sum()


def test_log_prob_matches_independent_formula():
    target = targets.make_target("planar")
    stds = np.array([1.0] + [0.2] * 9)
    rng = np.random.default_rng(1)
    theta = rng.normal(0, stds, size=(5, 10))
    c = np.asarray(target.sample_contexts(jax.random.key(1), 5), np.float64)
    c[0] = np.asarray(target.end_effector(jnp.asarray(theta[0])))  # a goal the arm reaches
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(target.log_prob)(jnp.asarray(theta), jnp.asarray(c)))
    ref = [_reference_log_prob(theta[i], c[i], stds) for i in range(5)]
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_log_prob_is_maximised_at_an_ik_solution():
    target = targets.make_target("planar")
    with jax.enable_x64(True):
        theta_star = jnp.asarray(np.random.default_rng(2).normal(0, 0.3, 10))
        goal = target.end_effector(theta_star)
        neg = jax.jit(jax.value_and_grad(lambda t: -target.log_prob(t, goal)))
        res = optimize.minimize(
            lambda t: tuple(np.asarray(v, np.float64) for v in neg(jnp.asarray(t))),
            np.zeros(10),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 2000, "gtol": 1e-9},
        )
        theta_opt = jnp.asarray(res.x)
        err = float(jnp.linalg.norm(target.end_effector(theta_opt) - goal))
        lp_opt, lp_star = -float(res.fun), float(target.log_prob(theta_star, goal))
        hess = jax.jit(jax.hessian(lambda t: target.log_prob(t, goal)))(theta_opt)
    assert err < 0.01, err  # the maximiser reaches the goal to within the likelihood std
    assert lp_opt >= lp_star - 1e-6
    assert np.all(np.linalg.eigvalsh(np.asarray(hess)) < 0)  # a strict local maximum


@pytest.mark.parametrize(
    "kwargs, rmin, rmax, amin, amax",
    [({}, 5.0, 9.0, -math.pi, math.pi), ({"min_angle": -0.5, "max_angle": 0.5}, 5, 9, -0.5, 0.5)],
    ids=["circle", "sector"],
)
def test_contexts_are_reachable_and_in_range(kwargs, rmin, rmax, amin, amax):
    target = targets.make_target("planar", **kwargs)
    c = np.asarray(target.sample_contexts(jax.random.key(3), 2000))
    assert c.shape == (2000, 2)
    r, a = np.linalg.norm(c, axis=-1), np.arctan2(c[:, 1], c[:, 0])
    assert np.all((r >= rmin - 1e-4) & (r <= rmax + 1e-4)) and np.all(r <= 10.0)
    assert np.all((a >= amin - 1e-4) & (a <= amax + 1e-4))
    assert r.min() < rmin + 0.1 and r.max() > rmax - 0.1  # the whole range is used
    assert a.min() < amin + 0.1 and a.max() > amax - 0.1


def test_box_shapes_and_errors():
    target = targets.make_target("planar", num_links=4, max_radius=3.5, min_radius=1.0)
    assert target.dim == 4 and target.context_dim == 2 and not target.is_normalized
    np.testing.assert_array_equal(target.lower, -np.pi * np.ones(4))
    np.testing.assert_array_equal(target.upper, np.pi * np.ones(4))
    assert target.log_prob(jnp.zeros((6, 1, 4)), jnp.ones((5, 2))).shape == (6, 5)
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 4\)"):
        target.end_effector(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\)"):
        target.log_prob(jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="reach"):
        targets.make_target("planar", max_radius=11.0)
    with pytest.raises(NotImplementedError, match="planar"):
        target.sample(jax.random.key(0), jnp.zeros((1, 2)), 3)
    with pytest.raises(NotImplementedError, match="log-normaliser"):
        target.log_normalizer(jnp.zeros((1, 2)))
