r"""Seed study: the comparison of `experiments/compare.py` at several training seeds, so that a
difference between methods can be told from the spread between seeds.

    python -m experiments.seeds --robots=panda --methods=avips,vanilla_gmm --preset=precise \
        --train_seeds=0,1,2 --runs_dir=runs/seeds --out=results/seeds_panda_precise

The run of seed s is `<runs_dir>/seed<s>/<robot>/<method>`, trained, resumed or loaded as by
compare (the same config at `--config.seed=s`); every run of a robot is evaluated on the same
seeded test set. Writes `<out>.csv` (compare's columns and `train_seed`, one row per robot,
method and seed) and `<out>.md`: for each metric, the median over the seeds with the per-seed
values, and, for each other method, on how many seeds avips is better (paired by
seed). All of compare's flags but --train_seed apply.
"""

import dataclasses
import datetime
import pathlib
import shlex
import sys

import numpy as np
from absl import app, flags, logging

from avips_jax import checkpoint, runtime

from . import cli_flags, compare, compare_report, compare_table

FLAGS = flags.FLAGS
REFERENCE = "avips"


# (row key, markdown header, number format, +1 if higher is better, -1 if lower is better)
SUMMARY_METRICS = (
    ("position_error_mean_mm", "pos. err. mean (mm)", ".2f", -1),
    ("success_rate_raw", "success raw", ".3f", +1),
    ("elbo", "ELBO (nats)", ".2f", +1),
    ("entropy", "entropy (nats)", ".2f", +1),
    ("mmd", "MMD", ".3f", -1),
    ("coverage_ratio", "coverage ratio vs restarts", ".2f", -1),
    ("converged_fraction_5it", "converged @5 LM it.", ".3f", +1),
    ("active_components_mean", "active comp./context", ".2f", +1),
    ("train_wall_time_s", "train wall time (s)", ".0f", -1),
)


def seed_settings(settings: compare.Settings, seed: int) -> compare.Settings:
    """compare's settings for training seed `seed`, in its own runs directory."""
    runs_dir = str(pathlib.Path(settings.runs_dir) / f"seed{seed}")
    return dataclasses.replace(settings, train_seed=seed, runs_dir=runs_dir)


def run_seeds(settings: compare.Settings, seeds: tuple[int, ...]) -> list[dict]:
    """Trains / loads and evaluates every (seed, robot, method); rows with "train_seed".

    Raises:
        ValueError: bad settings or seeds, or a run directory of another config (checked for
            every seed before anything is trained).
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--train_seeds must be distinct and not empty, got {list(seeds)}")
    compare.check_settings(settings)
    plans = [(seed, seed_settings(settings, seed)) for seed in seeds]
    jobs = [(seed, s, compare.plan(s)) for seed, s in plans]
    rows = []
    for seed, s, seed_jobs in jobs:
        for job in seed_jobs:
            row, _ = compare.run_job(job, s)
            rows.append(row | {"train_seed": seed})
    return rows


# An ELBO estimate cannot exceed log Z, which for these targets is a few tens of nats at most; an
# estimate above this is a broken log q (ill-conditioned Cholesky factors in float32), not a model.
BROKEN_ELBO = 1e6


def is_broken(row: dict) -> bool:
    """Whether the run's ELBO estimate is above BROKEN_ELBO (a numerically broken model)."""
    return compare_table.is_number(row.get("elbo")) and row["elbo"] > BROKEN_ELBO


def metric_values(
    rows: list[dict], robot: str, method: str, key: str, *, skip_broken: bool = False
) -> dict[int, float]:
    """{seed: value} of the "ok" rows of (robot, method) with a finite `key` (without the broken
    runs if `skip_broken`)."""
    return {
        r["train_seed"]: float(r[key])
        for r in rows
        if r["robot"] == robot
        and r["method"] == method
        and r.get("status", "ok") == "ok"
        and compare_table.is_number(r.get(key))
        and not (skip_broken and is_broken(r))
    }


def broken_notes(rows: list[dict]) -> list[str]:
    """A line for each broken run, saying it is left out of the paired wins."""
    return [
        f"{r['robot']} / {r['method']} / seed {r['train_seed']}: ELBO estimate "
        f"{r['elbo']:.3g} > {BROKEN_ELBO:.0e} nats, a numerically broken model (its position "
        f"error: {r.get('position_error_mean_mm', float('nan')):.1f} mm); shown in the cells, "
        "left out of the medians and the paired wins"
        for r in rows
        if r.get("status", "ok") == "ok" and is_broken(r)
    ]


def summary_cell(values: dict[int, float], fmt: str, broken: frozenset[int] = frozenset()) -> str:
    """ "median (v_s0, v_s1, ...)" in seed order; "n/a" without values. The median is over the
    seeds not in `broken` (their values are shown, marked "(broken)"); the median, not the mean,
    so that one run far off does not decide the cell."""
    if not values:
        return compare_table.NA
    kept = [values[s] for s in sorted(values) if s not in broken]
    each = ", ".join(
        _number(values[s], fmt) + (" (broken)" if s in broken else "") for s in sorted(values)
    )
    median = _number(float(np.median(kept)), fmt) if kept else compare_table.NA
    return f"{median} ({each})"


def _number(x: float, fmt: str) -> str:
    return format(x, ".3g") if abs(x) >= 1e6 else format(x, fmt)  # a diverged run: 1e+23


def wins_cell(reference: dict[int, float], other: dict[int, float], sign: int) -> str:
    """ "k of n": on how many of the seeds that both have avips is better (strictly)."""
    common = sorted(set(reference) & set(other))
    if not common:
        return compare_table.NA
    wins = sum(sign * (reference[s] - other[s]) > 0 for s in common)
    return f"{wins} of {len(common)}"


def summary_markdown(rows: list[dict]) -> str:
    """Per robot: a table of medians (per-seed values) by method, and avips's paired wins."""
    parts = []
    robots = list(dict.fromkeys(r["robot"] for r in rows))
    for robot in robots:
        methods = list(dict.fromkeys(r["method"] for r in rows if r["robot"] == robot))
        head = "| method | " + " | ".join(h for _, h, _, _ in SUMMARY_METRICS) + " |"
        lines = [f"### {robot}", "", head, "|" + "---|" * (len(SUMMARY_METRICS) + 1)]
        for method in methods:
            broken = frozenset(
                r["train_seed"]
                for r in rows
                if r["robot"] == robot and r["method"] == method and is_broken(r)
            )
            cells = [
                summary_cell(metric_values(rows, robot, method, key), fmt, broken)
                for key, _, fmt, _ in SUMMARY_METRICS
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        others = [m for m in methods if m != REFERENCE]
        if REFERENCE in methods and others:
            lines += [
                "",
                f"Seeds on which {REFERENCE} is better (paired by seed; broken runs left out):",
                "",
            ]
            lines += [head.replace("| method |", "| against |"), lines[3]]
            ref = {
                key: metric_values(rows, robot, REFERENCE, key, skip_broken=True)
                for key, _, _, _ in SUMMARY_METRICS
            }
            for method in others:
                cells = [
                    wins_cell(
                        ref[key], metric_values(rows, robot, method, key, skip_broken=True), sign
                    )
                    for key, _, _, sign in SUMMARY_METRICS
                ]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def report_markdown(rows: list[dict], settings: compare.Settings, seeds, command: str) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    failed = compare_table.notes(rows) + broken_notes(rows)
    return "\n".join(
        [
            f"# Seed study: {', '.join(settings.methods)} on {', '.join(settings.robots)} "
            f"({settings.preset} budget, training seeds {', '.join(map(str, seeds))})",
            "",
            f"Generated by `{command}` on {date}, from the run directories under "
            f"`{settings.runs_dir}/seed<s>`.",
            "",
            f"- Hardware: {compare_report.hardware()}.",
            "- Every cell: the median over the seeds, then the per-seed values in seed order; "
            "a numerically broken run (see the notes) is shown but left out of the median. "
            "Metrics as in `results/comparison.md`; the test set is the same for every seed "
            "and method.",
            "",
            summary_markdown(rows),
            "",
            "## Notes",
            "",
            "\n".join(f"- {n}" for n in failed) if failed else "None.",
            "",
        ]
    )


def write_report(rows: list[dict], settings: compare.Settings, seeds, command: str):
    """Writes `<out>.csv` and `<out>.md` atomically; returns their paths."""
    md_path, csv_path = pathlib.Path(f"{settings.out}.md"), pathlib.Path(f"{settings.out}.csv")
    columns = compare_table.CSV_COLUMNS + (compare_table.Column("train_seed", "train seed"),)
    checkpoint.write_atomic(csv_path, compare_table.csv_text(rows, columns))
    checkpoint.write_atomic(md_path, report_markdown(rows, settings, seeds, command))
    return md_path, csv_path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if FLAGS.train_seed is not None:
        sys.exit("seeds: error: use --train_seeds (a list), not --train_seed")
    command = " ".join(["python -m experiments.seeds", *map(shlex.quote, sys.argv[1:])])
    settings = compare.settings_from_flags()
    try:
        seeds = tuple(int(s) for s in FLAGS.train_seeds)
        rows = run_seeds(settings, seeds)
    except (ValueError, KeyError, FileNotFoundError) as err:
        sys.exit(f"seeds: error: {err}")
    md_path, csv_path = write_report(rows, settings, seeds, command)
    print(md_path.read_text(encoding="utf-8"))
    print(f"table: {md_path}\ncsv: {csv_path}")


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    compare.define_flags()
    flags.DEFINE_list("train_seeds", ["0", "1", "2"], "Training seeds (config.seed) to run.")
    FLAGS.set_default("runs_dir", "runs/seeds")
    FLAGS.set_default("out", "results/seeds")
    app.run(main, flags_parser=cli_flags.config_override_parser(compare.CONFIG_OVERRIDES))
