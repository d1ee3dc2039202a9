r"""Sampling wider or narrower at test time: the coverage / convergence trade-off of a trained GMM.

    python -m experiments.latent_scale --runs_dir=runs/cov/q10k_anneal08 --robot=panda \
        --methods=avips,vanilla_gmm --train_seeds=0,1,2 --scales=0.75,1,1.5,2 \
        --out=results/latent_scale_panda

A GMM sample is x = mu_k + s L_k eps (`AmortizedGMM.latent_scale` s; s = 1 is the density q).
For each finished run `<runs_dir>/seed<t>/<robot>/<method>` (as `experiments.seeds` writes them)
and each s, the run is evaluated on its config's seeded test set (the same for every run) with
refinement and without latency timing; nothing in the run directory is written. Writes `<out>.csv`
(one row per method, seed and scale) and `<out>.md`: per method and scale, the median over the
seeds with the per-seed values. The density figures (ELBO, entropy) do not depend on s and are
left out.
"""

import dataclasses
import datetime
import pathlib
import shlex
import sys
import tempfile

import numpy as np
from absl import app, flags, logging

from avips_jax import checkpoint, refine, run_report, runtime
from avips_jax.model import AmortizedGMM

from . import compare_report, compare_table, seeds

FLAGS = flags.FLAGS

# (metrics key, markdown header, number format)
COLUMNS = (
    ("coverage_ratio", "coverage ratio vs restarts", ".2f"),
    ("converged_fraction_5it", "converged @5 LM it.", ".3f"),
    ("converged_fraction_30it", "converged @30 LM it.", ".4f"),
    ("position_error_mean_mm", "raw pos. err. mean (mm)", ".1f"),
    ("success_rate_raw", "success raw", ".3f"),
    ("mmd", "MMD", ".3f"),
    ("mean_pairwise_joint_distance", "mean pairwise joint dist. (rad)", ".3f"),
)


def parse_scales(texts: list[str]) -> tuple[float, ...]:
    """The scales as floats; ValueError unless each is a finite number > 0 and they are distinct."""
    try:
        scales = tuple(float(t) for t in texts)
    except ValueError as err:
        raise ValueError(f"--scales must be numbers, got {texts}") from err
    if not scales or len(set(scales)) != len(scales):
        raise ValueError(f"--scales must be distinct and not empty, got {texts}")
    bad = [s for s in scales if not (np.isfinite(s) and s > 0)]
    if bad:
        raise ValueError(f"--scales must be finite numbers > 0, got {bad}")
    return scales


def run_dirs(
    runs_dir: str, robot: str, methods: list[str], train_seeds: tuple[int, ...]
) -> dict[tuple[str, int], pathlib.Path]:
    """{(method, seed): run directory}; FileNotFoundError naming every missing one."""
    dirs = {
        (m, s): pathlib.Path(runs_dir) / f"seed{s}" / robot / m
        for m in methods
        for s in train_seeds
    }
    missing = [str(d) for d in dirs.values() if not (d / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(
            "no trained run in " + ", ".join(missing) + " (train them with experiments.seeds)"
        )
    return dirs


def evaluate_scales(workdir: pathlib.Path, scales: tuple[float, ...]) -> list[dict]:
    """One metrics dict per scale (with "latent_scale") of the run in `workdir`."""
    run = checkpoint.load_model(workdir)
    if not isinstance(run.model, AmortizedGMM):
        raise ValueError(f"{workdir}: the model of method {run.config.method!r} is not a GMM")
    rows = []
    with tempfile.TemporaryDirectory() as plot_dir:
        for scale in scales:
            scaled = dataclasses.replace(run, model=run.model.with_latent_scale(scale))
            metrics, _ = run_report.evaluate_run(
                scaled, refine_fn=refine.refine, latency=False, plot_dir=pathlib.Path(plot_dir)
            )
            rows.append(metrics | {"latent_scale": scale})
    return rows


SPREAD = "coverage_joint_spread_ratio"  # a list: one value per joint


def spread_cell(chosen: list[dict]) -> str:
    """ "[r_1, ..., r_dof]": per joint, the median over the rows of `SPREAD`; "n/a" if none."""
    lists = [r[SPREAD] for r in chosen if isinstance(r.get(SPREAD), list | tuple)]
    if not lists:
        return compare_table.NA
    values = np.nanmedian(np.asarray(lists, dtype=float), axis=0)
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def summary_markdown(rows: list[dict], methods: list[str], scales: tuple[float, ...]) -> str:
    """A table per method: one line per scale, each cell the median (per-seed values), and the
    per-joint spread ratio (medians over the seeds)."""
    headers = [h for _, h, _ in COLUMNS] + ["joint spread ratio q1..qn (median)"]
    head = "| latent scale | " + " | ".join(headers) + " |"
    parts = []
    for method in methods:
        lines = [f"### {method}", "", head, "|" + "---|" * (len(headers) + 1)]
        for scale in scales:
            chosen = [r for r in rows if r["method"] == method and r["latent_scale"] == scale]
            cells = [
                seeds.summary_cell(
                    {
                        r["train_seed"]: float(r[key])
                        for r in chosen
                        if compare_table.is_number(r.get(key))
                    },
                    fmt,
                )
                for key, _, fmt in COLUMNS
            ]
            lines.append(f"| {scale:g} | " + " | ".join([*cells, spread_cell(chosen)]) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def report_markdown(rows, robot, methods, scales, train_seeds, runs_dir, command) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    first = rows[0]
    return "\n".join(
        [
            f"# Sampling at a latent scale: {', '.join(methods)} on {robot} "
            f"(training seeds {', '.join(map(str, train_seeds))})",
            "",
            f"Generated by `{command}` on {date}, from the run directories under "
            f"`{runs_dir}/seed<t>/{robot}`.",
            "",
            f"- Hardware: {compare_report.hardware()}.",
            "- Samples x = mu_k + s L_k eps with latent scale s (s = 1: the model's density). "
            f"Test set: {first['num_targets']} targets x {first['samples_per_target']} samples "
            f"(seed {first['test_seed']}); coverage on {first['coverage_num_targets']} targets "
            f"against {first['coverage_num_reference']} refined uniform restarts each "
            "(`results/comparison.md` defines the metrics).",
            "- Every cell: the median over the training seeds, then the per-seed values in "
            "seed order. Joint spread ratio: per joint, the std of the converged refined samples "
            "over that of the reference solutions (`coverage_joint_spread_ratio`; < 1: narrower "
            "than the solution set along that joint).",
            "",
            summary_markdown(rows, methods, scales),
            "",
        ]
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    command = " ".join(["python -m experiments.latent_scale", *map(shlex.quote, sys.argv[1:])])
    try:
        scales = parse_scales(FLAGS.scales)
        train_seeds = tuple(int(s) for s in FLAGS.train_seeds)
        dirs = run_dirs(FLAGS.runs_dir, FLAGS.robot, FLAGS.methods, train_seeds)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"latent_scale: error: {err}")
    rows = []
    for (method, seed), workdir in dirs.items():
        print(f"evaluating {workdir} at scales {', '.join(map(str, scales))}", flush=True)
        rows += [
            r | {"method": method, "train_seed": seed} for r in evaluate_scales(workdir, scales)
        ]
    md_path, csv_path = pathlib.Path(f"{FLAGS.out}.md"), pathlib.Path(f"{FLAGS.out}.csv")
    columns = (
        compare_table.Column("method", "method"),
        compare_table.Column("train_seed", "train seed"),
        compare_table.Column("latent_scale", "latent scale"),
        *(compare_table.Column(key, header) for key, header, _ in COLUMNS),
        compare_table.Column(SPREAD, "joint spread ratio"),
    )
    csv_rows = [r | {SPREAD: " ".join(map(repr, r.get(SPREAD, [])))} for r in rows]
    md = report_markdown(
        rows, FLAGS.robot, FLAGS.methods, scales, train_seeds, FLAGS.runs_dir, command
    )
    md_path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_atomic(csv_path, compare_table.csv_text(csv_rows, columns))
    checkpoint.write_atomic(md_path, md)
    print(md)
    print(f"table: {md_path}\ncsv: {csv_path}")


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    flags.DEFINE_string("runs_dir", "runs/seeds", "Holds <runs_dir>/seed<t>/<robot>/<method>.")
    flags.DEFINE_string("robot", "panda", "Robot (experiments/configs/<robot>.py).")
    flags.DEFINE_list("methods", ["avips", "vanilla_gmm"], "GMM methods to evaluate.")
    flags.DEFINE_list("train_seeds", ["0", "1", "2"], "Training seeds of the runs.")
    flags.DEFINE_list("scales", ["0.75", "1", "1.5", "2"], "Latent scales s to sample at.")
    flags.DEFINE_string("out", "results/latent_scale", "Writes <out>.md and <out>.csv.")
    app.run(main)
