"""The evaluation of a run directory: metrics.json, PNG plots and a markdown table.

    run = checkpoint.load_model(workdir)
    metrics, plot_paths = run_report.evaluate_run(run, refine_fn=refine.refine)
    run_report.write_metrics(workdir / run_report.METRICS_FILE, metrics)

Defaults come from the run config's `eval` section. The test set is fixed and seeded: contexts
`target.sample_contexts(PRNGKey(seed), num_targets)`; the metrics are `ik_evaluation`'s with what
they were measured on (robot, σ_pos, hardware, versions). Robot targets only (IK, TALOS).
`experiments/evaluate.py` is its command line; `run.train_and_evaluate` calls it after training.
"""

import dataclasses
import json
import logging
import os
import pathlib
import tempfile

import jax
import numpy as np

from avips_jax import checkpoint, ik_evaluation, ik_metrics, plots
from avips_jax.model import AmortizedGMM
from avips_jax.settings import Settings
from avips_jax.targets import RobotTarget

METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"
EVAL_DIR = "eval"


def output_dir(
    workdir: pathlib.Path,
    config,
    *,
    num_targets: int | None = None,
    samples_per_target: int | None = None,
    seed: int | None = None,
    step: int | None = None,
    latest_step: int | None = None,
    refine: bool = True,
    latency: bool = True,
) -> pathlib.Path:
    """Where an evaluation writes metrics.json and plots/: the run directory itself for the
    default setting (the config's `eval` section, the latest checkpoint, refinement and latency
    on), else `<workdir>/eval/<tag>` with a tag naming what differs (e.g. `step4_targets3`,
    `norefine`), so that no evaluation replaces the results of another setting."""
    defaults = Settings.from_config(config).evaluation
    parts = []
    if step is not None and step != latest_step:
        parts.append(f"step{step}")
    for name, value, default in (
        ("targets", num_targets, defaults.num_targets),
        ("samples", samples_per_target, defaults.samples_per_target),
        ("seed", seed, defaults.seed),
    ):
        if value is not None and value != default:
            parts.append(f"{name}{value}")
    parts += [] if refine else ["norefine"]
    parts += [] if latency else ["nolatency"]
    workdir = pathlib.Path(workdir)
    return workdir / EVAL_DIR / "_".join(parts) if parts else workdir


class OutputNotWritableError(OSError):
    """The directory an evaluation would write to cannot be written."""


def check_writable(directory: pathlib.Path) -> None:
    """Creates `directory` (and its parents) and writes and removes a probe file there, so that
    a read-only location fails before any work, not after it.

    Raises:
        OutputNotWritableError: naming the directory and the reason.
    """
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_probe."):
            pass
    except OSError as err:
        raise OutputNotWritableError(
            f"cannot write to {directory} ({err.strerror or err}); choose a writable directory "
            "with --out=DIR"
        ) from err


def eval_settings(config, num_targets=None, samples_per_target=None, seed=None) -> dict:
    """The run config's `eval` section (`settings.Evaluation`) with the given overrides, as a
    dict; ValueError naming a value out of its range.

    Keys: num_targets, samples_per_target, seed, coverage_targets, coverage_reference.
    """
    overrides = {"num_targets": num_targets, "samples_per_target": samples_per_target, "seed": seed}
    evaluation = dataclasses.replace(
        Settings.from_config(config).evaluation,
        **{name: value for name, value in overrides.items() if value is not None},
    )
    if evaluation.samples_per_target < 2:
        raise ValueError("samples_per_target must be >= 2 (pairwise diversity metrics)")
    return dataclasses.asdict(evaluation)


def make_test_contexts(target, num_targets: int, seed: int) -> jax.Array:
    """The fixed test set: (num_targets, d_c) contexts drawn with PRNGKey(seed)."""
    sample = jax.jit(target.sample_contexts, static_argnums=1)
    return sample(jax.random.PRNGKey(seed), num_targets)


def run_info(run, settings: dict) -> dict:
    """What the numbers were measured on: robot, contexts, sigma_pos, hardware, versions."""
    device = jax.devices()[0]
    target = run.target
    return {
        "workdir": str(run.workdir),
        "checkpoint_step": int(run.step),
        "target": target.name,
        "robot": target.robot.name,
        "context": target.context,
        "position_std_m": float(target.goal_position_std),
        "hardware": f"{device.platform}: {device.device_kind} (x{jax.device_count()})",
        "jax_version": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "test_seed": int(settings["seed"]),
        "success_thresholds": {
            "raw_m": ik_metrics.SUCCESS_RAW_M,
            "refined_m": ik_metrics.SUCCESS_REFINED_M,
            "raw_deg_pose": float(np.degrees(ik_evaluation.SUCCESS_RAW_RAD)),
            "refined_deg_pose": float(np.degrees(ik_evaluation.SUCCESS_REFINED_RAD)),
        },
    }


def train_wall_time(workdir: pathlib.Path) -> float | None:
    """The last `wall_time_s` in `<workdir>/history.jsonl`, if logged."""
    history = _history(workdir)
    times = [r["wall_time_s"] for r in history if "wall_time_s" in r]
    return float(times[-1]) if times else None


def _history(workdir: pathlib.Path) -> list[dict]:
    path = pathlib.Path(workdir) / "history.jsonl"
    if not path.is_file():
        return []
    try:
        return plots.read_history(path)
    except ValueError as err:
        logging.warning("ignoring unreadable history: %s", err)
        return []


def make_plots(run, solutions: ik_evaluation.Solutions, plot_dir: pathlib.Path) -> list:
    """The PNGs of one evaluation (those that apply to the target and model)."""
    target, model, paths = run.target, run.model, []
    name = f"{target.robot.name} ({target.context})"
    points = np.asarray(jax.jit(target.skeleton_points)(solutions.x[0]))
    comps = None if solutions.components is None else solutions.components[0]
    goal = np.asarray(solutions.contexts[0, :3])
    paths.append(
        plots.plot_solutions_3d(
            plot_dir / "solutions_target0.png",
            points,
            target.skeleton_edges,
            goal,
            comps,
            title=f"{name}: solutions for test target 0",
        )
    )
    paths.append(
        plots.plot_error_histogram(
            plot_dir / "position_error_hist.png",
            solutions.position_error * 1e3,
            title=f"{name}: position error of {solutions.position_error.size} samples",
        )
    )
    if isinstance(model, AmortizedGMM):
        weights = np.asarray(model.weights(solutions.contexts))
        paths.append(
            plots.plot_component_weights(
                plot_dir / "component_weights.png", weights, title=f"{name}: mixture weights"
            )
        )
    history = _history(run.workdir)
    if history:
        paths.append(
            plots.plot_training_curves(
                plot_dir / "training_curves.png", history, title=f"{name}: training"
            )
        )
    return paths


def check_robot_target(target) -> None:
    """ValueError unless `target` is a robot target (IK or TALOS): the IK metrics need a robot."""
    if not isinstance(target, RobotTarget):
        raise ValueError(
            f"evaluate measures IK solutions and needs a robot target (ik, talos), not "
            f"{target.name!r}"
        )


def evaluate_run(
    run,
    *,
    num_targets: int | None = None,
    samples_per_target: int | None = None,
    seed: int | None = None,
    refine_fn=None,
    latency: bool = True,
    plot_dir: pathlib.Path | None = None,
) -> tuple[dict, list]:
    """Metrics (with run info) and plots of a loaded run (`checkpoint.TrainedRun`-like: config,
    target, model, step, workdir). Overrides default to the config's `eval` section.

    Raises:
        ValueError: if the run's target is not a robot target (`check_robot_target`).
    """
    check_robot_target(run.target)
    settings = eval_settings(run.config, num_targets, samples_per_target, seed)
    contexts = make_test_contexts(run.target, settings["num_targets"], settings["seed"])
    key = jax.random.PRNGKey(settings["seed"] + 1)
    metrics, solutions = ik_evaluation.evaluate_model(
        run.model,
        run.target,
        contexts,
        key,
        samples_per_target=settings["samples_per_target"],
        refine_fn=refine_fn,
        coverage_targets=settings["coverage_targets"],
        coverage_reference=settings["coverage_reference"],
        latency=latency,
        return_solutions=True,
    )
    metrics = {**run_info(run, settings), **metrics}
    wall = train_wall_time(run.workdir)
    if wall is not None:
        metrics["train_wall_time_s"] = wall
    plot_dir = pathlib.Path(run.workdir) / PLOTS_DIR if plot_dir is None else plot_dir
    return metrics, make_plots(run, solutions, plot_dir)


def _json_value(value):
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN / inf
    return value


def write_metrics(path: pathlib.Path, metrics: dict) -> None:
    """Writes metrics as JSON atomically (a temporary file renamed over `path`)."""
    text = json.dumps({k: _json_value(v) for k, v in metrics.items()}, indent=2) + "\n"
    checkpoint.write_atomic(path, text)


def format_table(metrics: dict) -> str:
    """A two-column markdown table of the scalar metrics (4 significant digits) and the lists of
    numbers (3 significant digits each)."""
    lines = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        if isinstance(value, dict):
            continue
        if isinstance(value, list):
            text = "[" + ", ".join(f"{v:.3g}" for v in value) + "]"
        else:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {text} |")
    return "\n".join(lines)
