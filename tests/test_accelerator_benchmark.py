"""benchmarks/accelerator.py: its pure helpers, and the tiny mode end to end on 2 host devices."""

import math

import jax
import numpy as np
import pytest

from benchmarks import accelerator as acc
from tests.experiments import cli

TABLES = (
    "Train step",
    "Sampling latency: 1 target x 64 samples",
    "Sampling latency: 16 targets x 8 samples",
    "FK throughput (end effector)",
)


def test_round_up_gives_the_next_multiple():
    assert acc.round_up(512, 6) == 516  # 6 * 85 = 510 < 512 <= 516 = 6 * 86
    assert acc.round_up(512, 8) == 512
    assert acc.round_up(1, 4) == 4
    assert acc.round_up(2000, 32) == 2016  # 32 * 62 = 1984 < 2000 <= 2016
    for n, m in ((0, 2), (5, 0), (-3, 2)):
        with pytest.raises(ValueError, match="round_up"):
            acc.round_up(n, m)


def test_sized_labels_rounding_only_when_it_happens():
    assert acc.sized(1000, 8) == (1000, "1000")
    assert acc.sized(1000, 16) == (1008, "1008 (1000 rounded up to a multiple of 16)")


def test_device_counts_double_up_to_the_total():
    assert acc.device_counts(1) == (1,)
    assert acc.device_counts(2) == (1, 2)
    assert acc.device_counts(8) == (1, 2, 4, 8)
    assert acc.device_counts(6) == (1, 2, 4, 6)
    assert acc.device_counts(9) == (1, 2, 4, 8, 9)
    with pytest.raises(ValueError, match="device count"):
        acc.device_counts(0)


def test_with_host_devices_appends_and_keeps_other_flags():
    flag = "--xla_force_host_platform_device_count"
    assert acc.with_host_devices(None, 2) == f"{flag}=2"
    given = f"--xla_cpu_multi_thread_eigen=false {flag}=8 --xla_dump_to=/tmp/x"
    assert acc.with_host_devices(given, 4) == (
        f"--xla_cpu_multi_thread_eigen=false --xla_dump_to=/tmp/x {flag}=4"
    )
    with pytest.raises(ValueError, match="--host_devices"):
        acc.with_host_devices("", 0)


def _row(robot, devices, items, median_s):
    return acc.Row(robot, devices, "size", items, acc.Timing(1.0, median_s, 3))


def test_speedup_is_the_throughput_ratio_to_one_device_of_the_same_robot():
    rows = [
        _row("a", 1, 100, 2.0),  # 50 / s
        _row("a", 2, 102, 0.51),  # 200 / s (padded batch: ratio of throughputs, not of times)
        _row("b", 2, 10, 1.0),  # no 1-device row for b
    ]
    assert rows[1].throughput == pytest.approx(200.0)
    assert acc.speedup(rows[0], rows) == pytest.approx(1.0)
    assert acc.speedup(rows[1], rows) == pytest.approx(4.0)
    assert acc.speedup(rows[2], rows) is None


def test_command_line_records_xla_flags_and_arguments():
    assert acc.command_line(["--tiny", "--robots=panda"], None) == (
        "python -m benchmarks.accelerator --tiny --robots=panda"
    )
    assert acc.command_line(["--host_devices=2"], "--a=1 --b=2") == (
        "XLA_FLAGS='--a=1 --b=2' python -m benchmarks.accelerator --host_devices=2"
    )


def test_time_calls_stops_at_max_calls_or_budget_but_not_below_the_minimum():
    seen = []

    def call(i):
        seen.append(i)
        return np.zeros(())

    timing = acc.time_calls(call, max_calls=5, budget_s=1e9)
    assert timing.calls == 5 and seen == [0, 1, 2, 3, 4, 5]  # call 0 compiles, not timed
    seen.clear()
    timing = acc.time_calls(call, max_calls=50, budget_s=0.0)
    assert timing.calls == acc._MIN_CALLS and len(seen) == acc._MIN_CALLS + 1
    assert timing.median_s >= 0 and timing.compile_s >= 0


def test_check_split_rejects_an_output_on_too_few_devices():
    x = jax.device_put(np.zeros((4, 3), np.float32), jax.devices()[0])
    acc.check_split(x, 1)
    with pytest.raises(RuntimeError, match="split over 2 devices"):
        acc.check_split(x, 2)


def _tables(text: str) -> dict[str, list[list[str]]]:
    """Section title -> the data rows of its markdown table (cells stripped)."""
    out = {}
    for section in text.split("\n## ")[1:]:
        title, _, body = section.partition("\n")
        rows = [line.strip("|").split("|") for line in body.splitlines() if line.startswith("|")]
        out[title.strip()] = [[c.strip() for c in r] for r in rows[2:]]
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("accelerator") / "accelerator.md"
    args = ["--tiny", "--robots=panda", "--host_devices=2", f"--output={out}"]
    proc = cli.run_module("benchmarks.accelerator", *args, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.exists()
    return out.read_text(), proc.stderr


@pytest.mark.slow  # ~30 s idle: a subprocess on 2 devices; the helpers above are the default's
def test_tiny_run_records_two_devices_and_the_command(tiny_run):
    text, log = tiny_run
    assert "- Devices: 2 x " in text
    assert "python -m benchmarks.accelerator --tiny --robots=panda --host_devices=2" in text
    assert f"jax {jax.__version__}" in text
    assert log.count("panda train on") == 2  # progress logged per row


@pytest.mark.slow  # ~30 s idle: a subprocess on 2 devices; the helpers above are the default's
def test_tiny_run_has_a_row_per_device_count_with_positive_finite_numbers(tiny_run):
    tables = _tables(tiny_run[0])
    assert set(TABLES) <= set(tables)
    for title in TABLES:
        rows = tables[title]
        assert [(r[0], r[1]) for r in rows] == [("panda", "1"), ("panda", "2")], title
        for r in rows:
            numbers = [float(c) for c in r[3:7]] + [float(r[7].rstrip("x"))]
            assert all(math.isfinite(v) and v > 0 for v in numbers), (title, r)
        # speed-up column = throughput ratio. All three numbers are printed to at least 3
        # significant digits (throughputs >= 1e5 to 4), each off by at most 0.5% of itself, so
        # they agree to 1.5% (+ float slack).
        assert rows[0][7] == "1.00x"
        ratio = float(rows[1][6]) / float(rows[0][6])
        assert float(rows[1][7].rstrip("x")) == pytest.approx(ratio, rel=0.016)


@pytest.mark.slow  # ~30 s idle: a subprocess on 2 devices; the helpers above are the default's
def test_tiny_run_throughput_is_items_over_median_time(tiny_run):
    tables = _tables(tiny_run[0])
    train = tables["Train step"][0]
    assert train[2] == "B=8, K=2, S=2, d=7"
    # B x K x S = 8 x 2 x 2 = 32 samples per step
    assert float(train[6]) == pytest.approx(32 / (float(train[5]) / 1e3), rel=0.01)
    fk = tables["FK throughput (end effector)"][1]
    assert float(fk[6]) == pytest.approx(1024 / (float(fk[5]) / 1e3), rel=0.01)
