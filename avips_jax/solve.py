"""Command line IK: sample joint configurations for a target from a trained run.

    python -m avips_jax.solve --workdir=runs/panda --target 0.4 0.1 0.6 -n 20 [--refine]
    python -m avips_jax.solve --workdir=runs/panda_pose --target 0.4 0.1 0.6 1 0 0 0 -n 5

Prints one table per target: the joint vector of every sample (rad, in `robot.joint_names`
order) and its position error (mm; plus the orientation error in degrees for pose-trained runs).
`--target` may be repeated. Bad input (unknown or damaged run directory, a target of the wrong
length, NaN, outside the workspace) ends with a one-line `error: ...` on stderr and exit code 1;
argument syntax errors exit with 2 (argparse).
"""

import argparse
import sys
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging as absl_logging

from avips_jax import ik_evaluation, ik_metrics, runtime
from avips_jax.kinematics import errors as kinematics_errors
from avips_jax.solver import IKSolver


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m avips_jax.solve",
        description="Sample IK solutions from a trained avips_jax run.",
    )
    parser.add_argument("--workdir", required=True, help="run directory (experiments/train.py)")
    parser.add_argument(
        "--target",
        required=True,
        action="append",
        nargs="+",
        type=float,
        metavar="V",
        help="x y z (m) [qw qx qy qz for pose-trained runs]; repeat for several targets",
    )
    parser.add_argument("-n", "--num-samples", type=int, default=20, help="samples per target")
    parser.add_argument("--refine", action="store_true", help="Levenberg-Marquardt refinement")
    parser.add_argument(
        "--latent-scale",
        type=float,
        default=1.0,
        help="sample x = mu + s L eps (1: the model; > 1: more diverse, less accurate seeds)",
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    return parser


def tolerances(refined: bool) -> tuple[float, float]:
    """(position m, orientation rad) within which a sample reaches its target: the evaluation's
    success thresholds, refined (1 mm, 0.1 deg) or raw (1 cm, 2 deg)."""
    if refined:
        return ik_metrics.SUCCESS_REFINED_M, ik_evaluation.SUCCESS_REFINED_RAD
    return ik_metrics.SUCCESS_RAW_M, ik_evaluation.SUCCESS_RAW_RAD


def format_table(
    solver: IKSolver, target: np.ndarray, q: np.ndarray, refined: bool = False
) -> tuple[str, int]:
    """The table of one target's samples q (n, dof): joints (rad), errors and whether each
    reaches the target (`tolerances`); returns (text, number of samples that reach it)."""
    tol_m, tol_rad = tolerances(refined)
    pos = 1e3 * np.asarray(solver.target.position_error(q, target[None]))
    errors = {"pos_err_mm": pos}
    reached = pos <= 1e3 * tol_m
    if solver.context == "pose":
        angle = np.asarray(solver.target.orientation_error(q, target[None]))
        errors["rot_err_deg"] = np.degrees(angle)
        reached &= angle <= tol_rad
    header = [f"{f'q{i + 1}':>8s}" for i in range(q.shape[-1])] + [f"{k:>11s}" for k in errors]
    lines = [
        f"target {np.array2string(target, precision=4, separator=', ')}",
        "   # " + " ".join(header) + "  reached",
    ]
    for i, row in enumerate(q):
        cells = [f"{a:8.4f}" for a in row] + [f"{v[i]:11.4f}" for v in errors.values()]
        lines.append(f"{i:4d} " + " ".join(cells) + ("  yes" if reached[i] else "  NO"))
    within = f"{1e3 * tol_m:g} mm" + (
        f" and {np.degrees(tol_rad):g} deg" if solver.context == "pose" else ""
    )
    lines.append(
        f"position error (mm): median {np.median(pos):.4f}, max {np.max(pos):.4f}; "
        f"{int(np.sum(reached))} of {len(q)} samples reach the target (within {within})"
    )
    return "\n".join(lines), int(np.sum(reached))


def run(args: argparse.Namespace) -> int:
    """Loads the run, samples and prints; returns the exit code: 0, or 2 when no sample reached
    some target (it may be out of reach; the message names it). Other errors propagate."""
    solver = IKSolver.load(args.workdir, args.step)
    d_c = solver.target.context_dim
    for values in args.target:
        if len(values) != d_c:
            raise ValueError(
                f"--target needs {d_c} values for this {solver.context}-trained run "
                f"({'x y z' if d_c == 3 else 'x y z qw qx qy qz'}), got {len(values)}: {values}"
            )
    targets = solver.check_targets(np.array(args.target))
    q = np.asarray(
        solver.sample(
            jax.random.key(args.seed),
            targets,
            args.num_samples,
            refine=args.refine,
            latent_scale=args.latent_scale,
        )
    )
    robot = solver.robot
    print(
        f"run {args.workdir} ({robot.name}, {solver.context} contexts, "
        f"{'refined' if args.refine else 'raw'} samples); joints q1..q{robot.dof} = "
        + ", ".join(robot.joint_names)
    )
    missed = []
    for target, q_target in zip(targets, q, strict=True):
        text, num_reached = format_table(solver, target, q_target, refined=args.refine)
        print(text)
        if num_reached == 0:
            missed.append(np.array2string(target, precision=4, separator=", "))
    if missed:
        hint = "" if args.refine else " (try --refine)"
        print(
            f"error: no sample reached target(s) {'; '.join(missed)}{hint}; out of reach, or "
            "too far from the model's training distribution",
            file=sys.stderr,
        )
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.num_samples < 1:
        _parser().error(f"-n must be >= 1, got {args.num_samples}")
    try:
        return run(args)
    except (ValueError, FileNotFoundError, kinematics_errors.KinematicsError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


def cli() -> None:
    """The `avips-solve` command (also `python -m avips_jax.solve`)."""
    runtime.set_cpu_safety_flags()
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file it reads at INFO
    sys.exit(main())


if __name__ == "__main__":
    cli()
