"""Small dense linear algebra: triangular solves and Cholesky, LAPACK-free on CPU.

On CPU, written in jnp (fori_loops over the static dimension d) instead of jax.lax.linalg /
jnp.linalg: jaxlib 0.10.2 runs its batched CPU LAPACK kernels (potrf, trsm, syevd, ...;
jaxlib/cpu/lapack_kernels.cc, ParallelBatchMap) as chunks on the XLA:CPU intra-op pool and blocks
the calling pool thread until they finish: once as many such kernels run concurrently as the pool
has threads (2 on a 2-core host), every thread waits and the process hangs at 0% CPU, with or
without --xla_cpu_multi_thread_eigen=false (seen here with 3000 Gaussians of d = 34). The loops
are as fast as LAPACK for d <= 34, vectorise over the batch, and carry their own derivative rules
(custom_linear_solve, custom_jvp) so that autodiff never stores per-iteration state.

The deadlock is XLA:CPU's: on every other platform (GPU, TPU) `forward_substitution` and
`cholesky` lower to the platform's own solvers (`jax.lax.platform_dependent`; only the branch of
the platform compiled for is lowered), with the same conventions (a failed factorisation is
marked by -1 on the diagonal, never NaN).
"""

import chex
import jax
import jax.numpy as jnp


def symmetrize(mat: chex.Array) -> chex.Array:
    """(A + A^T) / 2 over the last two axes."""
    return 0.5 * (mat + jnp.swapaxes(mat, -1, -2))


def take(x: chex.Array, i: chex.Array, axis: int) -> chex.Array:
    return jax.lax.dynamic_index_in_dim(x, i, axis=axis, keepdims=False)


def put(x: chex.Array, value: chex.Array, i: chex.Array, axis: int) -> chex.Array:
    return jax.lax.dynamic_update_index_in_dim(x, jnp.expand_dims(value, axis), i, axis=axis)


def forward_substitution(lower: chex.Array, rhs: chex.Array) -> chex.Array:
    """lower^{-1} rhs for lower (..., d, d) and rhs (..., d, m); reads only the lower triangle.

    The jnp loop on CPU, the platform's triangular solve elsewhere (module docstring)."""
    return jax.lax.platform_dependent(
        lower, rhs, cpu=_forward_substitution_loop, default=_forward_substitution_native
    )


def _broadcast_batch(lower: chex.Array, rhs: chex.Array) -> tuple[chex.Array, chex.Array]:
    """lower (..., d, d) and rhs (..., d, m) broadcast to one batch shape."""
    shape = jnp.broadcast_shapes(lower.shape[:-2], rhs.shape[:-2])
    return jnp.broadcast_to(lower, shape + lower.shape[-2:]), jnp.broadcast_to(
        rhs, shape + rhs.shape[-2:]
    )


def _forward_substitution_native(lower: chex.Array, rhs: chex.Array) -> chex.Array:
    lower, rhs = _broadcast_batch(lower, rhs)
    dtype = jnp.result_type(lower, rhs)
    return jax.lax.linalg.triangular_solve(
        jnp.tril(lower).astype(dtype), rhs.astype(dtype), left_side=True, lower=True
    )


def _forward_substitution_loop(lower: chex.Array, rhs: chex.Array) -> chex.Array:
    d = lower.shape[-1]
    cols = jnp.arange(d)

    def body(i, x):
        row = jnp.where(cols < i, take(lower, i, -2), 0.0)  # (..., d) strictly lower part
        r = take(rhs, i, -2) - jnp.einsum("...k,...km->...m", row, x)
        return put(x, r / take(take(lower, i, -2), i, -1)[..., None], i, -2)

    return jax.lax.fori_loop(0, d, body, jnp.zeros_like(rhs * lower[..., :1, :1]))


def _flip2(mat: chex.Array) -> chex.Array:
    return jnp.flip(mat, axis=(-2, -1))


def solve_lower(lower: chex.Array, rhs: chex.Array) -> chex.Array:
    """lower^{-1} rhs (lower (..., d, d) lower-triangular, rhs (..., d, m)), differentiable.

    A `jax.lax.custom_linear_solve`: derivatives come from the linear system, not from the loop,
    and the transposed solve (for reverse mode) is a back substitution with lower^T.
    """
    lower, rhs = _broadcast_batch(lower, rhs)
    tril = jnp.tril(lower)
    # lower^T y = c  <=>  (J lower^T J)(J y) = J c with J lower^T J lower-triangular.
    upper_as_lower = _flip2(jnp.swapaxes(tril, -1, -2))
    return jax.lax.custom_linear_solve(
        lambda x: tril @ x,
        rhs,
        solve=lambda _, b: forward_substitution(tril, b),
        transpose_solve=lambda _, b: jnp.flip(
            forward_substitution(upper_as_lower, jnp.flip(b, -2)), -2
        ),
    )


def _cholesky_loop(mat: chex.Array) -> chex.Array:
    """Left-looking Cholesky of (..., d, d); a failed (non-positive) pivot is stored as -1."""
    d = mat.shape[-1]
    rows = jnp.arange(d)

    def body(j, chol):
        v = take(mat, j, -1) - jnp.einsum("...ik,...k->...i", chol, take(chol, j, -2))
        pivot = take(v, j, -1)
        good = pivot > 0
        root = jnp.sqrt(jnp.where(good, pivot, 1.0))
        col = jnp.where(rows > j, v / root[..., None], 0.0)
        col = jnp.where(rows == j, jnp.where(good, root, -1.0)[..., None], col)
        return put(chol, col, j, -1)

    return jax.lax.fori_loop(0, d, body, jnp.zeros_like(mat))


@jax.custom_jvp
def cholesky(mat: chex.Array) -> chex.Array:
    """Lower Cholesky factor of a batch of SPD matrices (..., d, d), differentiable.

    A failed factorisation (non-positive pivot) leaves -1 on the diagonal: test it with
    `_diag(chol) > 0`. The factor stays finite (never NaN), so callers can fall back with
    `jnp.where` without poisoning gradients. The jnp loop on CPU, the platform's Cholesky
    elsewhere (module docstring).
    """
    return jax.lax.platform_dependent(mat, cpu=_cholesky_loop, default=_cholesky_native)


def _cholesky_native(mat: chex.Array) -> chex.Array:
    """The platform's Cholesky; a failed factorisation (NaN factor) becomes -I, so that the
    diagonal holds -1 as in `_cholesky_loop`."""
    chol = jax.lax.linalg.cholesky(mat, symmetrize_input=False)  # reads the lower triangle
    failed = ~jnp.all(jnp.isfinite(chol), axis=(-2, -1), keepdims=True)
    return jnp.where(failed, -jnp.eye(mat.shape[-1], dtype=chol.dtype), chol)


@cholesky.defjvp
def _cholesky_jvp(primals, tangents):
    (mat,), (dmat,) = primals, tangents
    chol = cholesky(mat)
    # dL = L Phi(L^{-1} dA L^{-T}), Phi = lower triangle with halved diagonal (dA symmetric).
    tmp = solve_lower(chol, symmetrize(dmat))
    inner = solve_lower(chol, jnp.swapaxes(tmp, -1, -2))
    phi = jnp.tril(inner) - 0.5 * jnp.eye(mat.shape[-1], dtype=mat.dtype) * inner
    return chol, chol @ phi
