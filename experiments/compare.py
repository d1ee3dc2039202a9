r"""Trains (or loads) every method on every robot and writes the comparison table and figures.

    python -m experiments.compare --preset=quick                 # CPU budget, every robot/method
    python -m experiments.compare --preset=full                  # GPU budget (paper scale)
    python -m experiments.compare --robots=panda --methods=avips,vanilla_gmm,gan_no_disc \
        --num_steps=20 --num_targets=3 --samples_per_target=8 --runs_dir=/tmp/c --out=/tmp/c/cmp
    # one of N processes (each on its host; runs_dir and out on a shared file system):
    python -m experiments.compare --preset=full \
        --coordinator_address=host0:1234 --num_processes=N --process_id=i   # or --distributed

Each (robot, method) runs `experiments/configs/<robot>.py` at `--preset` switched to the method
(`presets.apply_method`, as `--config=experiments/configs/<robot>.py:<preset>,<method>` would),
with `--num_steps` / `--train_seed` / `--config.key=value` overriding the config, in
`<runs_dir>/<robot>/<method>`: a finished run there is loaded, an unfinished one resumed
(experiments/train.py), a run of another config refused before anything is trained. A
combination a method does not support (its trainer refuses the target) is skipped with the
reason; a run that fails is reported as failed and the others go on. Every model of a robot is
evaluated on the same seeded test set (`avips_jax.run_report.evaluate_run`; metrics.json and
plots go to its run directory). Every run trains data-parallel over every device of every
process (as experiments/train.py does); process 0 alone evaluates and writes. Writes
`<out>.md` (tables, notes, the paper's claims checked by `compare_claims`, the command, config
hashes and hardware), `<out>.csv` (one row per robot and method) and `<out>_<robot>.png` (the
solution sets of all models for test target 0).
"""

import dataclasses
import datetime
import importlib
import os
import pathlib
import shlex
import sys

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from avips_jax import (
    checkpoint,
    distributed,
    ik_evaluation,
    methods,
    presets,
    refine,
    run_report,
    runtime,
    slot_layout,
    targets,
)
from avips_jax import run as run_lib
from avips_jax.model import AmortizedGMM
from avips_jax.targets import RobotTarget

from . import (
    cli_flags,
    compare_claims,
    compare_figure,
    compare_report,
    compare_table,
)

ROBOTS = compare_claims.ALL_ROBOTS
# Also accepted by --robots (not in the paper's table): pose contexts, the 6-DOF Atlas arm.
OTHER_ROBOTS = ("panda_pose", "atlas_arm")
FIGURE_TARGET = 0  # the test target every robot's figure shows
FLAGS = flags.FLAGS


# The `--config.a.b=v` arguments of the command line ("a.b=v", ...), applied to every config
# (filled by `cli_flags.config_override_parser` when run as a program).
CONFIG_OVERRIDES: list[str] = []


def define_flags() -> None:
    """The CLI flags; defined only when run as a program (as in experiments/evaluate.py)."""
    flags.DEFINE_list("robots", list(ROBOTS), "Robots (experiments/configs/<robot>.py).")
    flags.DEFINE_list("methods", list(presets.METHODS), "Methods (avips_jax.presets.METHODS).")
    flags.DEFINE_enum("preset", "quick", list(presets.PRESETS), "Training budget preset.")
    flags.DEFINE_integer("num_steps", None, "Overrides config.train.num_steps (all runs).")
    flags.DEFINE_integer("train_seed", None, "Overrides config.seed (the training seed).")
    flags.DEFINE_integer("num_targets", None, "Test targets (default: config.eval.num_targets).")
    flags.DEFINE_integer("samples_per_target", None, "Default: config.eval.samples_per_target.")
    flags.DEFINE_integer("seed", None, "Test-set seed (default: config.eval.seed).")
    flags.DEFINE_string("runs_dir", "runs/compare", "Run directories: <runs_dir>/<robot>/<method>.")
    flags.DEFINE_string(
        "out", "results/comparison", "Writes <out>.md, <out>.csv, <out>_<robot>.png"
    )
    flags.DEFINE_bool("refine", True, "Refinement metrics (refined success, MMD, coverage).")
    flags.DEFINE_bool("latency", True, "Time sampling (1 x 2000 and 1000 x 250 samples).")
    flags.DEFINE_bool("progress_bar", True, "Show a progress bar while training.")
    cli_flags.define_distributed_flags()


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to compare and where (the CLI flags)."""

    robots: tuple[str, ...] = ROBOTS
    methods: tuple[str, ...] = presets.METHODS
    preset: str = "quick"
    num_steps: int | None = None
    train_seed: int | None = None
    overrides: tuple[str, ...] = ()
    num_targets: int | None = None
    samples_per_target: int | None = None
    seed: int | None = None
    runs_dir: str = "runs/compare"
    out: str = "results/comparison"
    refine: bool = True
    latency: bool = True
    progress_bar: bool = True


def check_settings(settings: Settings) -> None:
    """ValueError naming an unknown robot, method or preset, or a budget < 1."""
    for what, given, known in (
        ("robot", settings.robots, ROBOTS + OTHER_ROBOTS),
        ("method", settings.methods, presets.METHODS),
        ("preset", (settings.preset,), presets.PRESETS),
    ):
        unknown = [name for name in given if name not in known]
        if unknown or not given:
            raise ValueError(
                f"unknown {what}(s) {unknown or given}; choose from {', '.join(known)}"
            )
    for name in ("num_steps", "num_targets"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if settings.samples_per_target is not None and settings.samples_per_target < 2:
        raise ValueError(f"--samples_per_target must be >= 2, got {settings.samples_per_target}")


def method_config(
    robot: str,
    method: str,
    preset: str,
    num_steps: int | None = None,
    seed: int | None = None,
    overrides: tuple[str, ...] = (),
) -> ml_collections.ConfigDict:
    """The resolved config of `method` on `robot` at `preset` (with the overrides: num_steps,
    seed, then the "key=value" ones of `--config.key=value`)."""
    module = importlib.import_module(f"{__package__}.configs.{robot}")
    # get_config(preset) then apply_method: the same config as "<preset>,<method>" gives, also
    # for config files (talos.py) whose get_config takes a bare preset only.
    config = presets.apply_method(module.get_config(preset), method, preset)
    if num_steps is not None:
        config.train.num_steps = num_steps
    if seed is not None:
        config.seed = seed
    return presets.apply_overrides(config, overrides)


def unsupported_reason(config: ml_collections.ConfigDict) -> str | None:
    """Why the method of `config` cannot run on its target (the trainer's ValueError), or None."""
    target = targets.from_config(config)
    try:
        methods.make_trainer(config, target)
    except ValueError as err:
        return str(err)
    return None


def run_dir(runs_dir: str | os.PathLike, robot: str, method: str) -> pathlib.Path:
    return pathlib.Path(runs_dir) / robot / method


def parameters_in_use(model) -> int:
    """Trainable scalars of the slots in use: a GMM's inactive component slots (their component
    networks and gate-head outputs) do not count; other models count all parameters."""
    total = model.num_parameters
    if not isinstance(model, AmortizedGMM):
        return total
    params = model.variables["params"]
    unused = slot_layout.slot_mask(params, ~np.asarray(model.active, bool))
    return total - int(sum(np.sum(leaf) for leaf in jax.tree.leaves(unused)))


METRIC_KEYS = (
    "position_error_mean_mm",
    "position_error_median_mm",
    "success_rate_raw",
    "success_rate_refined",
    "orientation_error_mean_deg",
    "elbo",
    "entropy",
    "mmd",
    "mean_pairwise_joint_distance",
    "coverage_distance",
    "coverage_distance_restarts",
    "coverage_ratio",
    "converged_fraction_5it",
    "converged_fraction_30it",
    "active_components_mean",
    "num_active_slots",
    "num_parameters",
    "latency_1x2000_ms",
    "latency_1000x250_ms",
    "train_wall_time_s",
    "context",
    "jax_version",
    "num_targets",
    "samples_per_target",
    "test_seed",
)


def sigma_pos_m(target) -> float | None:
    """The likelihood width of the end-effector position (m) of a robot target, else None."""
    return float(target.goal_position_std) if isinstance(target, RobotTarget) else None


def metrics_row(robot: str, method: str, metrics: dict, run, trained: str) -> dict:
    """The table row of one evaluated run (`compare_table` keys)."""
    row = {"robot": robot, "method": method, "status": "ok", "note": ""}
    row.update({key: metrics.get(key) for key in METRIC_KEYS})
    sigma = sigma_pos_m(run.target)
    is_gmm = isinstance(run.model, AmortizedGMM)
    row.update(
        sigma_pos_mm=None if sigma is None else 1e3 * sigma,
        max_components=int(run.config.model.num_components) if is_gmm else None,
        num_parameters_in_use=parameters_in_use(run.model),
        train_steps=int(run.step),
        trained=trained,
        config_hash=compare_table.config_hash(run.config),
        device=metrics.get("hardware"),
        cpu_count=os.cpu_count(),
        workdir=str(run.workdir),
    )
    return row


def train_or_load(
    config: ml_collections.ConfigDict, workdir: pathlib.Path, progress: bool, mesh=None
) -> str:
    """Trains (or resumes) the run in `workdir`, data-parallel over `mesh` if given; "loaded" if
    it had already finished, else "here"."""
    result = run_lib.train_and_checkpoint(config, workdir, progress=progress, mesh=mesh)
    return "loaded" if result is None else "here"


def figure_panel(run, method: str, contexts: jax.Array, n: int, seed: int):
    """The `compare_figure.Panel` of `n` samples of `run.model` for `contexts` (1, d_c)."""
    key = jax.random.PRNGKey(seed + 2)
    sols = ik_evaluation.sample_solutions(run.model, run.target, contexts, key, n)
    points = np.asarray(jax.jit(run.target.skeleton_points)(sols.x[0]))
    error_mm = 1e3 * float(np.median(sols.position_error))
    comps = None if sols.components is None else sols.components[0]
    return compare_figure.Panel(f"{method}\nmedian error {error_mm:.1f} mm", points, comps)


def evaluate_one(robot: str, method: str, workdir: pathlib.Path, settings: Settings, trained: str):
    """(row, panel or None) of the finished run in `workdir`; writes its metrics.json and plots.
    In a multi-process run: in process 0 (the others get None, `run.in_writer`)."""
    return run_lib.in_writer(
        workdir, lambda run: _evaluate_loaded(run, robot, method, workdir, settings, trained)
    )


def _evaluate_loaded(run, robot, method, workdir, settings, trained):
    ev = run_report.eval_settings(
        run.config, settings.num_targets, settings.samples_per_target, settings.seed
    )
    metrics, _ = run_report.evaluate_run(
        run,
        num_targets=ev["num_targets"],
        samples_per_target=ev["samples_per_target"],
        seed=ev["seed"],
        refine_fn=refine.refine if settings.refine else None,
        latency=settings.latency,
    )
    run_report.write_metrics(workdir / run_report.METRICS_FILE, metrics)
    row = metrics_row(robot, method, metrics, run, trained)
    panel = None
    if isinstance(run.target, RobotTarget):
        contexts = run_report.make_test_contexts(run.target, ev["num_targets"], ev["seed"])
        one = contexts[FIGURE_TARGET : FIGURE_TARGET + 1]
        panel = figure_panel(run, method, one, ev["samples_per_target"], ev["seed"])
    return row, panel


@dataclasses.dataclass
class Job:
    """One (robot, method) of the plan: its config and run directory, or why it is skipped."""

    robot: str
    method: str
    config: ml_collections.ConfigDict
    workdir: pathlib.Path
    skip_reason: str | None


def plan(settings: Settings) -> list[Job]:
    """Every (robot, method) job, checked before anything is trained.

    Raises:
        run_lib.ConfigMismatchError: a run directory holds a run of another config.
    """
    jobs = []
    for robot in settings.robots:
        for method in settings.methods:
            config = method_config(
                robot,
                method,
                settings.preset,
                settings.num_steps,
                settings.train_seed,
                settings.overrides,
            )
            workdir = run_dir(settings.runs_dir, robot, method)
            reason = unsupported_reason(config)
            if reason is None:
                run_lib.check_workdir(workdir, config)
            jobs.append(Job(robot, method, config, workdir, reason))
    return jobs


def run_job(job: Job, settings: Settings, mesh=None):
    """(row, panel or None) of one job: skipped, or trained/loaded (over `mesh`) and evaluated;
    an error in training or evaluation gives a "failed" row (the traceback is logged). None in
    the processes other than 0 of a multi-process run."""
    if job.skip_reason is not None:
        note = f"not supported: {job.skip_reason}"
        return compare_table.skipped_row(job.robot, job.method, "skipped", note), None
    try:
        trained = train_or_load(job.config, job.workdir, settings.progress_bar, mesh)
        return evaluate_one(job.robot, job.method, job.workdir, settings, trained)
    except Exception as err:  # one failed run must not lose the others' results
        logging.exception("%s / %s failed", job.robot, job.method)
        note = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return compare_table.skipped_row(job.robot, job.method, "failed", note), None


def write_robot_figure(
    robot: str, config: ml_collections.ConfigDict, panels: list, settings: Settings
) -> pathlib.Path | None:
    """`<out>_<robot>.png`: the panels of every evaluated model for test target 0."""
    if not panels:
        return None
    target = targets.from_config(config)
    ev = run_report.eval_settings(
        config, settings.num_targets, settings.samples_per_target, settings.seed
    )
    contexts = run_report.make_test_contexts(target, ev["num_targets"], ev["seed"])
    goal = np.asarray(contexts[FIGURE_TARGET, :3])
    return compare_figure.plot_solution_grid(
        pathlib.Path(f"{settings.out}_{robot}.png"),
        panels,
        target.skeleton_edges,
        goal,
        title=f"{robot}: solutions of every model for test target {FIGURE_TARGET} "
        f"(goal, the star: ({', '.join(f'{v:.3f}' for v in goal)}) m)",
    )


def run_robot(
    robot: str, jobs: list[Job], settings: Settings, mesh=None
) -> tuple[list[dict], list]:
    """The rows of one robot's jobs and its figure (a list of 0 or 1 paths); nothing in the
    processes other than 0 of a multi-process run."""
    rows, panels = [], []
    for job in jobs:
        outcome = run_job(job, settings, mesh)
        if outcome is None:
            continue
        row, panel = outcome
        rows.append(row)
        if panel is not None:
            panels.append(panel)
    figure = write_robot_figure(robot, jobs[0].config, panels, settings)
    return rows, [] if figure is None else [figure]


def write_report(rows: list[dict], figures: list, settings: Settings, command: str):
    """Writes `<out>.csv` and `<out>.md` (atomically); returns their paths."""
    md_path = pathlib.Path(f"{settings.out}.md")
    csv_path = pathlib.Path(f"{settings.out}.csv")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = compare_report.header_markdown(
        rows, settings, command, compare_report.hardware(), date
    )
    claims = compare_claims.evaluate_claims(rows)
    text = compare_report.report_markdown(rows, claims, figures, header, md_path.parent)
    checkpoint.write_atomic(csv_path, compare_table.csv_text(rows))
    checkpoint.write_atomic(md_path, text)
    return md_path, csv_path


def run_comparison(
    settings: Settings, command: str, mesh=None
) -> tuple[pathlib.Path, pathlib.Path, list] | None:
    """Plans, trains/loads, evaluates, and writes `<out>.md`, `<out>.csv` and the figures.

    Args:
        settings: what to compare and where.
        command: the command line the report names.
        mesh: train every run data-parallel over this device mesh (`distributed.data_mesh()`);
            in a multi-process run, every process calls this and process 0 evaluates and writes.

    Returns:
        (markdown path, CSV path, figure paths); None in the processes other than 0.

    Raises:
        ValueError: bad settings, or a run directory of another config (before any training).
    """
    check_settings(settings)
    jobs = plan(settings)
    rows, figures = [], []
    for robot in settings.robots:
        robot_rows, robot_figures = run_robot(
            robot, [j for j in jobs if j.robot == robot], settings, mesh
        )
        rows += robot_rows
        figures += robot_figures
    if not distributed.is_writer():
        return None
    md_path, csv_path = write_report(rows, figures, settings, command)
    return md_path, csv_path, figures


def settings_from_flags() -> Settings:
    return Settings(
        robots=tuple(FLAGS.robots),
        methods=tuple(FLAGS.methods),
        preset=FLAGS.preset,
        num_steps=FLAGS.num_steps,
        train_seed=FLAGS.train_seed,
        overrides=tuple(CONFIG_OVERRIDES),
        num_targets=FLAGS.num_targets,
        samples_per_target=FLAGS.samples_per_target,
        seed=FLAGS.seed,
        runs_dir=FLAGS.runs_dir,
        out=FLAGS.out,
        refine=FLAGS.refine,
        latency=FLAGS.latency,
        progress_bar=FLAGS.progress_bar,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    command = " ".join(["python -m experiments.compare", *map(shlex.quote, sys.argv[1:])])
    try:
        mesh = cli_flags.start_distributed()  # data-parallel over every device of every process
        written = run_comparison(settings_from_flags(), command, mesh)
    except (ValueError, KeyError, FileNotFoundError) as err:
        sys.exit(f"compare: error: {err}")
    if written is None:  # a process other than 0 of a multi-process run: it trained, no more
        return
    md_path, csv_path, figures = written
    print(md_path.read_text(encoding="utf-8"))
    print(f"table: {md_path}\ncsv: {csv_path}")
    for path in figures:
        print(f"figure: {path}")


def cli() -> None:
    """The `avips-compare` command (also `python -m experiments.compare` in a checkout)."""
    runtime.set_cpu_safety_flags()
    define_flags()
    app.run(main, flags_parser=cli_flags.config_override_parser(CONFIG_OVERRIDES))


if __name__ == "__main__":
    cli()
