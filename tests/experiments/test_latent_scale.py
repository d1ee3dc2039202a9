"""`python -m experiments.latent_scale`: a tiny run evaluated at two latent scales from the CLI,
the summary on synthetic rows, and bad input refused before anything is evaluated."""

import csv
import pathlib
import subprocess

import pytest

from avips_jax import checkpoint, fit
from experiments import latent_scale
from tests.experiments import cli
from tests.experiments.test_evaluate_cli import _config

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return cli.run_module("experiments.latent_scale", *args)


def test_parse_scales_refuses_bad_values():
    assert latent_scale.parse_scales(["1", "1.5"]) == (1.0, 1.5)
    for bad in (["0"], ["-1"], ["nan"], ["1", "1.0"], [], ["wide"]):
        with pytest.raises(ValueError, match="--scales"):
            latent_scale.parse_scales(bad)


def test_missing_runs_are_all_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="seed0/panda/avips.*seed1/panda/avips"):
        latent_scale.run_dirs(str(tmp_path), "panda", ["avips"], (0, 1))


def test_summary_has_one_line_per_scale_with_the_per_seed_values():
    rows = [
        {
            "method": "avips",
            "train_seed": s,
            "latent_scale": scale,
            "coverage_ratio": v,
            "coverage_joint_spread_ratio": [v / 4, 1.0],
        }
        for s, scale, v in ((0, 1.0, 2.0), (1, 1.0, 2.2), (0, 2.0, 1.4), (1, 2.0, 1.6))
    ]
    text = latent_scale.summary_markdown(rows, ["avips"], (1.0, 2.0))
    assert "| 1 | 2.10 (2.00, 2.20) |" in text and "| 2 | 1.50 (1.40, 1.60) |" in text
    assert "| [0.53, 1.00] |" in text and "| [0.38, 1.00] |" in text


@pytest.mark.slow  # an experiment script; IKSolver latent_scale: test_solver (CI budget)
def test_cli_evaluates_each_scale_without_touching_the_run(tmp_path):
    workdir = tmp_path / "runs" / "seed0" / "panda" / "avips"
    config = _config()
    _, _, _, state, _ = fit.build(config)
    checkpoint.save_config(workdir, config)
    checkpoint.save(workdir, state)
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    out = tmp_path / "res" / "scales"
    proc = _cli(
        f"--runs_dir={tmp_path / 'runs'}",
        "--robot=panda",
        "--methods=avips",
        "--train_seeds=0",
        "--scales=1,3",
        f"--out={out}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before
    rows = list(csv.DictReader(pathlib.Path(f"{out}.csv").open()))
    assert [(r["method"], r["train_seed"], r["latent_scale"]) for r in rows] == [
        ("avips", "0", "1.0"),
        ("avips", "0", "3.0"),
    ]
    spread = [float(r["mean_pairwise_joint_distance"]) for r in rows]
    assert spread[1] > spread[0]  # wider samples
    assert all(0 <= float(r["converged_fraction_30it"]) <= 1 for r in rows)
    assert all(len(r["coverage_joint_spread_ratio"].split()) == 7 for r in rows)  # Panda: 7
    text = pathlib.Path(f"{out}.md").read_text()
    assert "| 1 |" in text and "| 3 |" in text and "python -m experiments.latent_scale" in text


def test_cli_refuses_missing_runs_with_one_line(tmp_path):
    proc = _cli(f"--runs_dir={tmp_path}", "--train_seeds=0", f"--out={tmp_path / 'x'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("latent_scale: error: no trained run")
    assert not (tmp_path / "x.md").exists()
