"""`experiments.seeds`: the per-seed summary on synthetic rows, and a tiny two-seed run."""

import csv

import pytest

from experiments import compare, seeds
from tests import fingerprints

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _row(method, seed, **metrics):
    row = {"robot": "panda", "method": method, "status": "ok", "note": "", "train_seed": seed}
    return row | metrics


def test_summary_cell_median_and_values_in_seed_order():
    assert seeds.summary_cell({2: 3.0, 0: 1.0, 1: 2.5}, ".2f") == "2.50 (1.00, 2.50, 3.00)"
    assert seeds.summary_cell({5: 1.5}, ".1f") == "1.5 (1.5)"
    assert seeds.summary_cell({}, ".1f") == "n/a"
    broken = seeds.summary_cell({0: -2.0, 1: 7.8e23, 2: -1.0}, ".2f", frozenset({1}))
    assert broken == "-1.50 (-2.00, 7.8e+23 (broken), -1.00)"


def test_wins_are_paired_by_seed_and_follow_the_metric_direction():
    avips, other = {0: 1.0, 1: 5.0, 2: 2.0}, {0: 2.0, 1: 4.0, 3: 0.0}  # seeds 0 and 1 shared
    assert seeds.wins_cell(avips, other, +1) == "1 of 2"  # higher better: seed 1
    assert seeds.wins_cell(avips, other, -1) == "1 of 2"  # lower better: seed 0
    assert seeds.wins_cell(avips, {7: 1.0}, +1) == "n/a"


def test_summary_markdown_skips_failed_missing_and_broken_values():
    rows = [
        _row("avips", 0, entropy=-13.0, elbo=-4.0),
        _row("avips", 1, entropy=-13.4, elbo=float("nan")),
        _row("avips", 2, entropy=-13.1, elbo=-3.0),
        _row("vanilla_gmm", 0, entropy=-13.1, elbo=-3.0),
        _row("vanilla_gmm", 1, entropy=-13.2, elbo=-2.0),
        _row("vanilla_gmm", 2, entropy=7e23, elbo=8e23, position_error_mean_mm=400.0),
        {"robot": "panda", "method": "vanilla_gmm", "status": "failed", "note": "x",
         "train_seed": 3, "entropy": 99.0},
    ]  # fmt: skip
    assert seeds.metric_values(rows, "panda", "avips", "elbo") == {0: -4.0, 2: -3.0}
    assert seeds.metric_values(rows, "panda", "vanilla_gmm", "elbo", skip_broken=True) == {
        0: -3.0,
        1: -2.0,
    }
    text = seeds.summary_markdown(rows)
    assert "### panda" in text
    assert "| -13.10 (-13.00, -13.40, -13.10) |" in text  # avips entropy
    assert "| -13.15 (-13.10, -13.20, 7e+23 (broken)) |" in text  # vanilla entropy
    against = text.split("paired by seed")[1]
    # The broken seed 2 is left out: ELBO shared on seed 0 only (avips worse); entropy on
    # seeds 0 and 1 (avips better on seed 0).
    assert "| vanilla_gmm | n/a | n/a | 0 of 1 | 1 of 2 |" in against
    (note,) = seeds.broken_notes(rows)
    assert (
        note.startswith("panda / vanilla_gmm / seed 2: ELBO estimate 8e+23") and "400.0 mm" in note
    )


def test_bad_seed_lists_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        seeds.run_seeds(compare.Settings(robots=("panda",)), (0, 0))
    with pytest.raises(ValueError, match="distinct"):
        seeds.run_seeds(compare.Settings(robots=("panda",)), ())


@pytest.mark.slow  # ~30 s of training and evaluation; the summary's logic is unit-tested above
def test_two_seeds_train_in_their_own_directories_and_differ(tmp_path):
    settings = compare.Settings(
        robots=("panda",),
        methods=("gan_no_disc",),
        num_steps=5,
        overrides=fingerprints.OVERRIDES["gan_no_disc"],  # a tiny GAN
        num_targets=2,
        samples_per_target=8,
        runs_dir=str(tmp_path / "runs"),
        out=str(tmp_path / "res" / "seeds"),
        refine=False,
        latency=False,
        progress_bar=False,
    )
    rows = seeds.run_seeds(settings, (0, 3))
    assert [(r["train_seed"], r["status"]) for r in rows] == [(0, "ok"), (3, "ok")]
    for seed in (0, 3):
        run = tmp_path / "runs" / f"seed{seed}" / "panda" / "gan_no_disc"
        assert (run / "metrics.json").exists()
    assert rows[0]["position_error_mean_mm"] != rows[1]["position_error_mean_mm"]
    md_path, csv_path = seeds.write_report(rows, settings, (0, 3), "python -m experiments.seeds")
    table = list(csv.DictReader(csv_path.open()))
    assert [r["train_seed"] for r in table] == ["0", "3"]
    text = md_path.read_text()
    assert "training seeds 0, 3" in text and "| gan_no_disc |" in text
