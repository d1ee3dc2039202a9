"""Throughput of the batched KL projection against a per-sample SciPy solve of the same dual.

Times `avips_jax.projection.project_gaussian` (jitted, batched over N = B*K Gaussians, after a
warm-up call, with `block_until_ready`) in float32 and float64, forward and forward+backward, and
compares it with the approach of the reference C++/NLopt implementations: one
`scipy.optimize.minimize(method="L-BFGS-B")` per Gaussian on the convex dual
g(eta) = eta eps - 1/2 eta log det Sigma_o + 1/2 (eta + 1) log det Sigma(eta), eta in [0, 1e12],
started at eta = 1 (docs/math.md §3.3), timed on a subset and extrapolated per Gaussian. The
speed-up is measured in the same run on the same machine. Writes a markdown table.

Usage (from the repository root):
    python -m benchmarks.projection            # full run, writes benchmarks/results/projection.md
    python -m benchmarks.projection --quick    # a few seconds, prints the table only
"""

import argparse
import datetime
import os
import platform
import sys
import time

# Must precede the numpy import: the per-sample baseline is single-threaded (as the C++ code);
# a threaded BLAS on tiny matrices only adds synchronisation (ms per call on a busy host).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.optimize  # noqa: E402

from avips_jax import hardware, projection, runtime  # noqa: E402
from benchmarks import train_step  # noqa: E402

_FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000)
_FULL_DIMS = (7, 10, 34)
_QUICK_SIZES = (1_000, 10_000)
_QUICK_DIMS = (7,)
_DEFAULT_OUT = "benchmarks/results/projection.md"


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, d = 7, no file")
    parser.add_argument("--sizes", type=int, nargs="+", help="batch sizes N = B*K")
    parser.add_argument("--dims", type=int, nargs="+", help="dimensions d")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--scipy_samples", type=int, default=None, help="SciPy subset size")
    parser.add_argument(
        "--max_entries", type=float, default=5e7, help="skip sizes with N*d*d above this"
    )
    parser.add_argument("--grad_max_n", type=int, default=100_000, help="largest N for fwd+bwd")
    parser.add_argument(
        "--out", default=None, help=f"markdown output (full default {_DEFAULT_OUT})"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.sizes = args.sizes or (_QUICK_SIZES if args.quick else _FULL_SIZES)
    args.dims = args.dims or (_QUICK_DIMS if args.quick else _FULL_DIMS)
    args.scipy_samples = args.scipy_samples or (50 if args.quick else 200)
    if args.out is None and not args.quick:
        args.out = _DEFAULT_OUT
    return args


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def make_inputs(rng: np.random.Generator, n: int, d: int):
    """Predictions near their old Gaussians, as in training; most bounds active (float64)."""
    eye = np.eye(d)
    old_chol = np.tril(0.3 * rng.normal(size=(n, d, d)), -1) + eye * np.exp(
        0.5 * rng.normal(size=(n, 1, d))
    )
    noise = np.tril(rng.normal(size=(n, d, d)), -1) + eye * rng.normal(size=(n, 1, d))
    chol = old_chol + 0.3 * noise * np.abs(np.diagonal(old_chol, axis1=-2, axis2=-1))[:, None, :]
    chol = chol * np.where(np.diagonal(chol, axis1=-2, axis2=-1) < 0, -1.0, 1.0)[:, None, :]
    old_mean = rng.normal(size=(n, d))
    mean = old_mean + 0.3 * rng.normal(size=(n, d))
    eps_mean = 10.0 ** rng.uniform(-3, -1, n)
    eps_cov = 10.0 ** rng.uniform(-3, -1, n)
    return mean, chol, old_mean, old_chol, eps_mean, eps_cov


# --------------------------------------------------------------------------------------------
# Per-sample SciPy reference (the NLopt approach of the C++ implementations)
# --------------------------------------------------------------------------------------------


def scipy_project_one(mean, chol, old_mean, old_chol, eps_mean, eps_cov):
    """Projects one Gaussian: closed-form mean, L-BFGS-B on the covariance dual."""
    d = mean.shape[0]
    white = scipy.linalg.solve_triangular(old_chol, mean - old_mean, lower=True)
    m = 0.5 * white @ white
    mean_p = mean if m <= eps_mean else old_mean + np.sqrt(eps_mean / m) * (mean - old_mean)
    old_prec = scipy.linalg.cho_solve((old_chol, True), np.eye(d))
    prec = scipy.linalg.cho_solve((chol, True), np.eye(d))
    old_logdet = 2.0 * np.sum(np.log(np.diag(old_chol)))

    def kl_part(cov_logdet, cov):
        return 0.5 * (np.sum(old_prec * cov) - d + old_logdet - cov_logdet)

    cov = chol @ chol.T
    if kl_part(2.0 * np.sum(np.log(np.diag(chol))), cov) <= eps_cov:
        return mean_p, chol

    def dual(x):
        eta = x[0]
        try:
            lam_chol = np.linalg.cholesky((eta * old_prec + prec) / (1.0 + eta))
        except np.linalg.LinAlgError:
            return 1e12, np.array([-1.0])  # as the C++ code: push eta up
        cov_eta = scipy.linalg.cho_solve((lam_chol, True), np.eye(d))
        logdet = -2.0 * np.sum(np.log(np.diag(lam_chol)))
        value = eta * eps_cov - 0.5 * eta * old_logdet + 0.5 * (eta + 1.0) * logdet
        return value, np.array([eps_cov - kl_part(logdet, cov_eta)])

    res = scipy.optimize.minimize(
        dual, x0=np.array([1.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, 1e12)]
    )
    eta = res.x[0]
    cov_p = (1.0 + eta) * np.linalg.inv(eta * old_prec + prec)
    return mean_p, np.linalg.cholesky(0.5 * (cov_p + cov_p.T))


def time_scipy(inputs, n_samples, chunk=25, passes=3):
    """Seconds per Gaussian of the per-sample solve, and its covariance KL relative errors.

    Each chunk of `chunk` samples is timed `passes` times and its best time kept (as the best of
    several calls is kept for JAX), so that both sides see the least interference from other jobs
    on a shared host; the per-Gaussian time is the sum of the chunk bests over n_samples.
    """
    chols, total = [], 0.0
    for begin in range(0, n_samples, chunk):
        best = np.inf
        for _ in range(passes):
            start = time.perf_counter()
            stop = min(begin + chunk, n_samples)
            out = [scipy_project_one(*(x[i] for x in inputs))[1] for i in range(begin, stop)]
            best = min(best, time.perf_counter() - start)
        chols.extend(out)
        total += best
    per_gaussian, rel = total / len(chols), []
    for i, chol_p in enumerate(chols):
        old_chol, eps = inputs[3][i], inputs[5][i]
        white = scipy.linalg.solve_triangular(old_chol, chol_p, lower=True)
        kl = 0.5 * np.sum(white**2) - 0.5 * len(white)
        kl += np.sum(np.log(np.diag(old_chol))) - np.sum(np.log(np.diag(chol_p)))
        if not np.array_equal(chol_p, inputs[1][i]):
            rel.append(abs(kl - eps) / eps)
    return per_gaussian, np.array(rel)


# --------------------------------------------------------------------------------------------
# JAX timing
# --------------------------------------------------------------------------------------------


def _time(fn, args, min_total=1.0, max_reps=5):
    """Best wall time of `fn(*args)` over a few repetitions after one warm-up call."""
    jax.block_until_ready(fn(*args))
    best, total, reps = np.inf, 0.0, 0
    while reps < max_reps and (reps == 0 or total < min_total):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        elapsed = time.perf_counter() - start
        best, total, reps = min(best, elapsed), total + elapsed, reps + 1
    return best


def _loss(mean, chol, old_mean, old_chol, eps_mean, eps_cov):
    mean_p, chol_p = projection.project_gaussian(mean, chol, old_mean, old_chol, eps_mean, eps_cov)
    return jnp.sum(chol_p @ jnp.swapaxes(chol_p, -1, -2)) + jnp.sum(mean_p)


def time_jax(inputs, dtype, with_grad):
    """(forward seconds, forward+backward seconds or nan, active fraction, max rel KL error)."""
    with jax.enable_x64(dtype == "float64"):
        args = [jnp.asarray(x, dtype) for x in inputs]
        forward = jax.jit(projection.project_gaussian)
        fwd = _time(forward, args)
        both = np.nan
        if with_grad:
            both = _time(jax.jit(jax.grad(_loss, argnums=(0, 1))), args)
        _, chol_p = forward(*args)
    with jax.enable_x64(True):
        old_chol = jnp.asarray(np.asarray(args[3], np.float64))
        eps = np.asarray(args[5], np.float64)
        kl0 = np.asarray(
            projection.cov_kl_part(jnp.asarray(np.asarray(args[1], np.float64)), old_chol)
        )
        kl = np.asarray(
            projection.cov_kl_part(jnp.asarray(np.asarray(chol_p, np.float64)), old_chol)
        )
    active = kl0 > eps
    rel = np.abs(kl[active] - eps[active]) / eps[active]
    return fwd, both, active.mean(), (rel.max() if rel.size else 0.0)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _header(args, argv):
    cpu = hardware.cpu_model()
    device = jax.devices()[0]
    return [
        "# KL projection throughput",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- device: {device.platform} ({device.device_kind}); host CPU: {cpu}, "
        f"{os.cpu_count()} cores (shared with other jobs while measured)",
        f"- jax {jax.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"python {platform.python_version()}",
        f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '').strip()}`; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} (SciPy baseline)",
        f"- command: `{' '.join(['python -m benchmarks.projection', *argv])}`",
        f"- SciPy baseline: one L-BFGS-B solve of the dual per Gaussian (bounds [0, 1e12], "
        f"start 1, default tolerances), on the first {args.scipy_samples} Gaussians of each d in "
        "float64 (best of 3 timings of each chunk of 25, summed) and extrapolated "
        "linearly to N; its time includes the closed-form mean.",
        "- JAX: `jax.jit(project_gaussian)` on the whole batch, best of up to 5 timed calls after "
        "a warm-up (compile) call; fwd+bwd = `jax.grad` of sum(Sigma*) + sum(mu*) w.r.t. "
        "(mean, chol).",
        "- inputs: predictions near their old Gaussians (random Cholesky factors, 30% "
        "perturbations), bounds log-uniform in [1e-3, 1e-1]; 'active' = covariance bound active.",
        "",
    ]


def _row(d, n, dtype, res, scipy_per, note=""):
    if res is None:
        return f"| {d} | {n:.0e} | {dtype} | | | | | | | {note} |"
    fwd, both, active, rel = res
    speedup = scipy_per * n / fwd
    both_s = "" if np.isnan(both) else f"{both:.3g}"
    return (
        f"| {d} | {n:.0e} | {dtype} | {active:.2f} | {fwd:.3g} | {n / fwd:.3g} | {both_s} | "
        f"{scipy_per * n:.3g} | **{speedup:.0f}x** | {rel:.1e} {note}|"
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    lines = _header(args, argv)
    lines += [
        "| d | N = B·K | dtype | active | JAX fwd (s) | Gaussians/s | JAX fwd+bwd (s) | "
        "SciPy, extrapolated (s) | speed-up (fwd) | max rel. KL error (JAX) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    scipy_notes, goal = [], []
    rng = np.random.default_rng(args.seed)
    for d in args.dims:
        fitting = [n for n in args.sizes if n * d * d <= args.max_entries]
        inputs = make_inputs(rng, max(fitting + [args.scipy_samples]), d)
        scipy_per, scipy_rel = time_scipy(inputs, args.scipy_samples)
        scipy_notes.append(
            f"- d = {d}: SciPy {1e3 * scipy_per:.3g} ms per Gaussian; its covariance KL relative "
            f"error (active): median {np.median(scipy_rel):.1e}, max {scipy_rel.max():.1e}"
        )
        print(scipy_notes[-1], flush=True)
        for n in args.sizes:
            for dtype in args.dtypes:
                if n not in fitting:
                    note = f"skipped: N·d² = {n * d * d:.1e} > {args.max_entries:.0e} (memory/time)"
                    lines.append(_row(d, n, dtype, None, scipy_per, note))
                    continue
                sub = [x[:n] for x in inputs]
                res = time_jax(sub, dtype, with_grad=n <= args.grad_max_n)
                lines.append(_row(d, n, dtype, res, scipy_per))
                print(lines[-1], flush=True)
                if n == 10_000:
                    goal.append(f"d = {d} {dtype}: {scipy_per * n / res[0]:.0f}x")
    lines += ["", "SciPy baseline:", *scipy_notes, ""]
    if goal:
        lines += [
            "Issue goal (>= 100x the per-sample solve at N = 1e4 on CPU, forward pass): "
            + "; ".join(goal)
            + ".",
            "",
        ]
    if not args.quick:
        lines += [
            "## Train-step time per iteration",
            "",
            "The whole jitted aVIPS step (network, projection of all B·K Gaussians, samples, "
            "target, loss, gradients, Adam, trust regions), median of 30 steps after compilation; "
            "float32; overhead = time with the projection / time without.",
            "",
            *train_step.table_lines(),
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    main()
