"""avips_jax.linalg: the LAPACK-free loops (CPU) and the platform solvers (elsewhere) agree with
numpy / scipy, and each platform compiles only its own branch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax import export
from jax.test_util import check_grads

from avips_jax import linalg

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates


def _spd(rng, batch, d):
    a = rng.normal(size=(*batch, d, d))
    return a @ np.swapaxes(a, -1, -2) + d * np.eye(d)


@pytest.mark.parametrize("impl", [linalg.cholesky, linalg._cholesky_native])
def test_cholesky_matches_numpy_and_marks_failures(impl):
    rng = np.random.default_rng(0)
    mats = _spd(rng, (5,), 6).astype(np.float32)
    np.testing.assert_allclose(impl(jnp.asarray(mats)), np.linalg.cholesky(mats), rtol=1e-4)
    bad = mats.copy()
    bad[2] = -np.eye(6)  # not positive definite: the factor stays finite, -1 on its diagonal
    chol = np.asarray(impl(jnp.asarray(bad)))
    assert np.isfinite(chol).all()
    diag_ok = np.all(np.diagonal(chol, axis1=-2, axis2=-1) > 0, axis=-1)
    assert diag_ok.tolist() == [True, True, False, True, True]
    assert np.any(np.diagonal(chol[2]) == -1.0)


@pytest.mark.parametrize("impl", [linalg.forward_substitution, linalg._forward_substitution_native])
def test_forward_substitution_matches_scipy_and_broadcasts(impl):
    rng = np.random.default_rng(1)
    lower = np.linalg.cholesky(_spd(rng, (), 5)).astype(np.float32)
    lower_noisy_upper = lower + np.triu(rng.normal(size=(5, 5)), 1).astype(np.float32)
    rhs = rng.normal(size=(3, 5, 2)).astype(np.float32)  # lower broadcasts over the batch
    got = impl(jnp.asarray(lower_noisy_upper), jnp.asarray(rhs))  # the upper part is not read
    want = np.stack([scipy.linalg.solve_triangular(lower, r, lower=True) for r in rhs])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_derivatives_of_solve_and_cholesky():
    rng = np.random.default_rng(2)
    mat = jnp.asarray(_spd(rng, (2,), 4), jnp.float32)
    lower = linalg.cholesky(mat)
    rhs = jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32)
    tol = {"eps": 1e-2, "rtol": 2e-2, "atol": 2e-2}  # float32 finite differences
    check_grads(linalg.solve_lower, (lower, rhs), order=1, modes=["fwd", "rev"], **tol)
    check_grads(lambda m: linalg.cholesky(linalg.symmetrize(m)), (mat,), 1, **tol)


def _custom_calls(fn, platform, *args):
    text = export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()
    return [line for line in text.splitlines() if "stablehlo.custom_call" in line]


def test_cpu_compiles_no_lapack_and_gpu_gets_its_solvers():
    mats = jnp.asarray(_spd(np.random.default_rng(3), (4,), 3), jnp.float32)

    def fn(m):
        chol = linalg.cholesky(m)
        return linalg.solve_lower(chol, jnp.ones((4, 3, 1)))

    assert _custom_calls(fn, "cpu", mats) == []
    gpu = "\n".join(_custom_calls(fn, "cuda", mats))
    assert "potrf" in gpu, gpu  # cuSOLVER's Cholesky, not the loop
