r"""Evaluate a trained run: metrics.json, PNG plots and a markdown table (`avips_jax.run_report`).

    python -m experiments.evaluate --workdir=runs/panda [--num_targets=1000] \
        [--samples_per_target=250] [--seed=1234] [--step=2000] [--norefine] [--nolatency] \
        [--out=DIR]

Defaults come from the run config's `eval` section. Writes `plots/*.png` and then `metrics.json`
(atomically, last), prints the metrics as a markdown table and the plot paths. Where: `--out`, or
else the run directory for the default setting and `<workdir>/eval/<tag>/` for any other (tag
naming what differs, e.g. `eval/targets3/`; `run_report.output_dir`), so an evaluation never
replaces the results of another setting. A read-only run directory evaluates into `--out`. A
missing or damaged run directory, bad settings or an unwritable output directory are a one-line
error with exit status 1, before any work and before anything is written.
"""

import pathlib
import sys

from absl import app, flags, logging

from avips_jax import checkpoint, refine, run_report, runtime

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI flags; defined only when run as a program, so that importing this module next to
    `experiments.train` (which also has --workdir) does not clash."""
    flags.DEFINE_string("workdir", None, "Run directory written by experiments/train.py.")
    flags.DEFINE_integer("num_targets", None, "Test contexts (default: config.eval.num_targets).")
    flags.DEFINE_integer("samples_per_target", None, "Default: config.eval.samples_per_target.")
    flags.DEFINE_integer("seed", None, "Test-set seed (default: config.eval.seed).")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
    flags.DEFINE_bool("refine", True, "Refinement metrics (refined success, MMD, coverage).")
    flags.DEFINE_bool("latency", True, "Time sampling (1 x 2000 and 1000 x 250 samples).")
    flags.DEFINE_string(
        "out",
        None,
        "Directory for metrics.json and plots/ (default: the run directory, or "
        "<workdir>/eval/<setting>/ for a non-default setting).",
    )
    flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads at INFO
    workdir = pathlib.Path(FLAGS.workdir)
    try:
        run = checkpoint.load_model(workdir, FLAGS.step)
        run_report.check_robot_target(run.target)
        run_report.eval_settings(
            run.config, FLAGS.num_targets, FLAGS.samples_per_target, FLAGS.seed
        )
        out = (
            pathlib.Path(FLAGS.out)
            if FLAGS.out
            else run_report.output_dir(
                workdir,
                run.config,
                num_targets=FLAGS.num_targets,
                samples_per_target=FLAGS.samples_per_target,
                seed=FLAGS.seed,
                step=FLAGS.step,
                latest_step=checkpoint.latest_step(workdir),
                refine=FLAGS.refine,
                latency=FLAGS.latency,
            )
        )
        run_report.check_writable(out)
    except (OSError, ValueError, KeyError, TypeError) as err:  # bad run dir / config / output
        sys.exit(f"evaluate: error: {err}")
    refine_fn = refine.refine if FLAGS.refine else None
    metrics, paths = run_report.evaluate_run(
        run,
        num_targets=FLAGS.num_targets,
        samples_per_target=FLAGS.samples_per_target,
        seed=FLAGS.seed,
        refine_fn=refine_fn,
        latency=FLAGS.latency,
        plot_dir=out / run_report.PLOTS_DIR,
    )
    run_report.write_metrics(out / run_report.METRICS_FILE, metrics)
    print(run_report.format_table(metrics))
    print(f"\nmetrics: {out / run_report.METRICS_FILE}")
    for path in paths:
        print(f"plot: {path}")


def cli() -> None:
    """The `avips-evaluate` command (also `python -m experiments.evaluate` in a checkout)."""
    runtime.set_cpu_safety_flags()
    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
