r"""Trains a config into a run directory (`avips_jax.run.train_and_checkpoint`); resumes a
killed run.

    python -m experiments.train --config=experiments/configs/panda.py:quick --workdir=runs/panda
    python -m experiments.train --config=experiments/configs/toy.py:banana,quick \
        --config.train.num_steps=500 --workdir=/tmp/banana
    # one of N processes (each on its host; the workdir on a shared file system):
    python -m experiments.train --config=... --workdir=... \
        --coordinator_address=host0:1234 --num_processes=N --process_id=i
    python -m experiments.train --config=... --workdir=... --distributed   # TPU pod, SLURM

Training is data-parallel over every device of every process (`avips_jax.distributed`):
contexts sharded, parameters replicated; process 0 writes the run directory.

What the run directory holds, and how resuming, continuing (a larger
`--config.train.num_steps`) and a differing config are handled: see `avips_jax/run.py`.

Exit codes: 0 trained (or already complete); 1 bad input (bad config, a workdir of another
config, an unknown `--config.` key, another training process in the workdir, no intact
checkpoint), with a message naming the problem and nothing written; 3 the run diverged (its
newest checkpoint is the last finite one); 128 + the signal's number (130 SIGINT, 143 SIGTERM)
stopped by a signal after saving a checkpoint of the current step: relaunch to resume.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from avips_jax import distributed, divergence, preemption, run, run_lock, run_report, runtime

from . import cli_flags

FLAGS = flags.FLAGS
EXIT_DIVERGED = 3


def define_flags() -> None:
    """The CLI flags; defined only when run as a program, so that importing this module defines
    no flags."""
    config_flags.DEFINE_config_file(
        "config", None, "Config file, e.g. experiments/configs/panda.py:quick.", lock_config=True
    )
    flags.DEFINE_string("workdir", None, "Run directory (created; resumed if it exists).")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_bool(
        "evaluate", False, "Then evaluate the model (robot targets): metrics.json and plots."
    )
    cli_flags.define_distributed_flags()
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    try:
        mesh = cli_flags.start_distributed()  # data-parallel over every device of every process
        if distributed.is_writer():
            print(f"JAX devices: {jax.devices()} in {jax.process_count()} process(es)")
        if FLAGS.evaluate:
            result, metrics = run.train_and_evaluate(
                FLAGS.config, FLAGS.workdir, progress=FLAGS.progress, mesh=mesh
            )
        else:
            result = run.train_and_checkpoint(
                FLAGS.config, FLAGS.workdir, progress=FLAGS.progress, mesh=mesh
            )
            metrics = None
    except (
        ValueError,
        TypeError,
        KeyError,
        FileNotFoundError,
        run_lock.RunDirectoryBusyError,
    ) as err:
        sys.exit(f"error: {err}")
    except divergence.DivergenceError as err:
        print(f"error: {FLAGS.workdir}: {err}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    except preemption.Preempted as err:
        print(f"{FLAGS.workdir}: {err}; relaunch the same command to resume.", file=sys.stderr)
        sys.exit(err.exit_code)
    if result is not None and distributed.is_writer():
        last = result.history[-1] if result.history else {}
        print(
            f"done: {FLAGS.workdir} step {int(result.state.step)}, elbo {last.get('elbo')}, "
            f"active components {last.get('num_active')}, {result.wall_time_s:.0f} s"
        )
    if metrics is not None:
        print(
            f"evaluated: {FLAGS.workdir}/{run_report.METRICS_FILE}: mean raw position error "
            f"{metrics['position_error_mean_mm']:.1f} mm, coverage ratio "
            f"{metrics.get('coverage_ratio', float('nan')):.2f}"
        )


def cli() -> None:
    """The `avips-train` command (also `python -m experiments.train` in a checkout)."""
    runtime.set_cpu_safety_flags()
    define_flags()
    app.run(main, flags_parser=cli_flags.parse_flags)


if __name__ == "__main__":
    cli()
