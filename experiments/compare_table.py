"""The comparison table of `experiments/compare.py`: one row per (robot, method), as markdown
and CSV.

A row is a flat dict: "robot", "method", "status" ("ok", "skipped" or "failed"), "note", and the
metric keys of `COLUMNS` (missing or non-finite values print as "n/a"). Pure functions only.
"""

import csv
import dataclasses
import hashlib
import io
import math

import ml_collections

STATUSES = ("ok", "skipped", "failed")
NA = "n/a"


@dataclasses.dataclass(frozen=True)
class Column:
    """One table column.

    Attributes:
        key: the row key (also the CSV header).
        header: the markdown header.
        fmt: a format spec for numbers (e.g. ".1f", ".1%"); "" prints str(value).
    """

    key: str
    header: str
    fmt: str = ""


ID_COLUMNS = (Column("robot", "robot"), Column("method", "method"))
ACCURACY = (
    Column("position_error_mean_mm", "pos. err. mean (mm)", ".2f"),
    Column("position_error_median_mm", "pos. err. median (mm)", ".2f"),
    Column("success_rate_raw", "success raw (<1 cm)", ".1%"),
    Column("success_rate_refined", "success refined (<1 mm)", ".1%"),
    Column("orientation_error_mean_deg", "ori. err. mean (deg)", ".2f"),
)
DENSITY = (
    Column("elbo", "ELBO (nats)", ".3g"),
    Column("entropy", "entropy (nats)", ".3g"),
    Column("mmd", "MMD", ".3g"),
    Column("mean_pairwise_joint_distance", "pairwise dist. (rad)", ".3g"),
    Column("active_components_mean", "active comp./context", ".2f"),
    Column("num_active_slots", "active slots", "d"),
    Column("max_components", "K_max", "d"),
)
# How well the refined samples cover the IK solution set, against as many random restarts
# (ik_evaluation.coverage_metrics; ratio > 1: worse than the restarts).
COVERAGE = (
    Column("coverage_distance", "coverage dist. (rad)", ".3g"),
    Column("coverage_distance_restarts", "restarts' dist. (rad)", ".3g"),
    Column("coverage_ratio", "coverage ratio", ".3g"),
    Column("converged_fraction_5it", "converged @5 LM it.", ".1%"),
    Column("converged_fraction_30it", "converged @30 LM it.", ".1%"),
)
COST = (
    Column("num_parameters", "parameters", "d"),
    Column("num_parameters_in_use", "parameters in use", "d"),
    Column("latency_1x2000_ms", "latency 1x2000 (ms)", ".3g"),
    Column("latency_1000x250_ms", "latency 1000x250 (ms)", ".3g"),
    Column("train_wall_time_s", "train wall time (s)", ".0f"),
    Column("train_steps", "train steps", "d"),
    Column("trained", "trained", ""),
    Column("config_hash", "config sha256[:12]", ""),
)
RUN_INFO = (
    Column("status", "status"),
    Column("note", "note"),
    Column("context", "context"),
    Column("sigma_pos_mm", "sigma_pos (mm)", ".3g"),
    Column("device", "device"),
    Column("cpu_count", "CPUs", "d"),
    Column("jax_version", "jax"),
    Column("num_targets", "test targets", "d"),
    Column("samples_per_target", "samples per target", "d"),
    Column("test_seed", "test seed", "d"),
    Column("workdir", "run directory"),
)
# The markdown tables (title, columns after robot and method).
MARKDOWN_TABLES = (
    ("Accuracy", ACCURACY),
    ("Density, diversity, components", DENSITY),
    (
        "Coverage of the IK solution set (mean distance from reference solutions to the nearest "
        "refined sample; ratio > 1: worse than as many random restarts)",
        COVERAGE,
    ),
    ("Size and cost", COST),
)
CSV_COLUMNS = ID_COLUMNS + RUN_INFO + ACCURACY + DENSITY + COVERAGE + COST


def config_hash(config: ml_collections.ConfigDict) -> str:
    """The first 12 hex digits of sha256(config.to_json(sort_keys=True)): same config, same hash."""
    text = config.to_json(sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def is_number(value) -> bool:
    """Whether `value` is a finite int or float (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def format_value(value, fmt: str) -> str:
    """`value` printed with `fmt`; "n/a" for None, NaN and infinities.

    Raises:
        ValueError: a number that does not fit `fmt` (e.g. 1.5 with "d").
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA
    if not fmt or isinstance(value, str):
        return str(value)
    if fmt == "d" and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not an integer (format 'd')")
        value = int(value)
    return format(value, fmt)


def skipped_row(robot: str, method: str, status: str, note: str) -> dict:
    """A row without metrics ("skipped": not supported; "failed": an error), with its reason."""
    if status not in STATUSES[1:]:
        raise ValueError(f"status must be 'skipped' or 'failed', got {status!r}")
    return {"robot": robot, "method": method, "status": status, "note": note}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict], columns: tuple[Column, ...]) -> str:
    """A markdown table of robot, method and `columns`; rows not "ok" show their status once."""
    cols = ID_COLUMNS + columns
    lines = ["| " + " | ".join(c.header for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [format_value(row.get(c.key), c.fmt) for c in ID_COLUMNS]
        if row.get("status", "ok") == "ok":
            cells += [format_value(row.get(c.key), c.fmt) for c in columns]
        else:
            cells += [f"{row['status']} (see notes)"] + [""] * (len(columns) - 1)
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def markdown_tables(rows: list[dict]) -> str:
    """All `MARKDOWN_TABLES`, each under a "###" heading."""
    parts = [f"### {title}\n\n{markdown_table(rows, cols)}" for title, cols in MARKDOWN_TABLES]
    return "\n\n".join(parts)


def notes(rows: list[dict]) -> list[str]:
    """ "robot / method: status: note" for every row that is not "ok" or has a note."""
    return [
        f"{r['robot']} / {r['method']}: {r.get('status', 'ok')}: {r['note']}"
        for r in rows
        if r.get("status", "ok") != "ok" or r.get("note")
    ]


def csv_text(rows: list[dict], columns: tuple[Column, ...] = CSV_COLUMNS) -> str:
    """CSV with one header line of column keys; numbers unrounded (repr), missing cells empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow([_csv_cell(row.get(c.key)) for c in columns])
    return out.getvalue()


def _csv_cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)
