"""`benchmarks/fk.py --quick` writes a well-formed results table (no timing assertions)."""

import importlib.util
import os
import re
import sys

import pytest

from avips_jax import kinematics
from benchmarks import fk

_COLUMNS = [
    "robot",
    "dof",
    "poses / config",
    "batch",
    "JAX float32",
    "pinocchio loop",
    "JAX / pin loop",
    "pytorch_kinematics",
    "JAX / ptk",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One --quick run, all CPUs, with the project's python as a torch python lacking torch."""
    out = tmp_path_factory.mktemp("bench") / "fk.md"
    argv = ["--quick", "--cores=0", f"--out={out}", f"--torch_python={sys.executable}"]
    returned = fk.main(argv)
    return out, out.read_text(), returned


def _section(text, title):
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table(section):
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return split[0], split[2:]


def test_writes_the_file_it_prints(quick_run):
    out, text, returned = quick_run
    assert text == returned
    assert text.startswith("# Forward-kinematics throughput")


def test_header_records_the_run(quick_run):
    _, text, _ = quick_run
    labels = ("Command", "Date", "CPU", "JAX devices", "Versions", "XLA_FLAGS in effect", "Timing")
    for label in labels:
        assert re.search(rf"^- {label}[^:]*: \S", text, re.M), f"no {label} line"
    assert "python -m benchmarks.fk --quick --cores=0" in text
    assert "--xla_cpu_multi_thread_eigen=false" in text
    assert f"jax {fk.jax.__version__}" in text and "pinocchio (pin) " in text
    assert re.search(r"^- CPU: .*\d+ logical CPUs", text, re.M)


def test_throughput_table_rows_and_ratios(quick_run):
    _, text, _ = quick_run
    header, rows = _table(_section(text, "Throughput (configurations/s)"))
    assert header == _COLUMNS
    expected = [(r, b) for r in fk.QUICK_ROBOTS for b in fk.QUICK_BATCHES]
    assert [(row[0], int(float(row[3]))) for row in rows] == expected
    for row in rows:
        robot = kinematics.load_robot(row[0])
        assert int(row[1]) == robot.dof and int(row[2]) == len(robot.tips)
        jax_rate, pin_rate = float(row[4]), float(row[5])
        assert jax_rate > 0 and pin_rate > 0
        ratio = float(row[6].removesuffix("x"))
        assert ratio == pytest.approx(jax_rate / pin_rate, rel=0.02, abs=0.06)
        if importlib.util.find_spec("pytorch_kinematics") is None:
            assert row[7:] == ["n/a", "n/a"]


def test_details_show_agreement_with_pinocchio(quick_run):
    _, text, _ = quick_run
    header, rows = _table(_section(text, "Details"))
    assert header[0] == "robot" and header[-2].startswith("max pos. diff. JAX vs pin")
    assert [row[0] for row in rows] == list(fk.QUICK_ROBOTS)
    for row in rows:
        assert float(row[-2]) < 1e-5  # float32 JAX vs float64 pinocchio on the same q


def test_goals_and_missing_torch_are_explained(quick_run):
    _, text, _ = quick_run
    goals = _section(text, "Goals")
    assert "not assessed" in goals  # no batch 1e5 in --quick, no GPU here
    if importlib.util.find_spec("pytorch_kinematics") is None:
        assert re.search(r"^- pytorch_kinematics: failed \(exit 1\): .*No module named", text, re.M)
    assert "## Notes" in text and "rneaInParallel" in text


def test_argument_defaults():
    full = fk.parse_args([])
    assert full.batches == (1_000, 100_000, 1_000_000)
    assert full.robots == kinematics.available_robots()
    assert full.out == fk.DEFAULT_OUT and full.cores == 1
    quick = fk.parse_args(["--quick", "--batches=1e2,300", "--robots=talos"])
    assert quick.batches == (100, 300) and quick.robots == ("talos",) and quick.out is None
    assert fk.restrict_cores(0) == tuple(sorted(os.sched_getaffinity(0)))
