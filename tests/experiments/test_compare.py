"""`experiments.compare`: the table, the claims, the figure and the config plumbing on synthetic
metric rows (fast), and one end-to-end CLI run on Panda at a tiny budget."""

import csv
import io
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from avips_jax import checkpoint, model, networks, presets
from experiments import compare, compare_claims, compare_figure, compare_report, compare_table
from experiments.configs import panda, talos

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("fast_compiles")
R, NR, NM = compare_claims.REPRODUCED, compare_claims.NOT_REPRODUCED, compare_claims.NOT_MEASURED


def _row(robot, method, **metrics):
    return {"robot": robot, "method": method, "status": "ok", "note": "", **metrics}


def _claim(rows, fn, *args):
    return fn(compare_claims.index_rows(rows), *args)


# --- table -----------------------------------------------------------------------------------


def test_format_value():
    f = compare_table.format_value
    assert [f(None, ".2f"), f(float("nan"), ".2f"), f(float("inf"), "d")] == ["n/a"] * 3
    assert f(0.5, ".1%") == "50.0%" and f(3.0, "d") == "3" and f(12.345, ".2f") == "12.35"
    assert f("here", "") == "here" and f(7, "") == "7"
    with pytest.raises(ValueError, match="not an integer"):
        f(1.5, "d")


def test_config_hash_ignores_key_order_and_sees_every_value():
    a = ml_collections.ConfigDict({"x": 1, "y": {"z": (1, 2)}})
    b = ml_collections.ConfigDict({"y": {"z": (1, 2)}, "x": 1})
    c = ml_collections.ConfigDict({"x": 1, "y": {"z": (1, 3)}})
    assert compare_table.config_hash(a) == compare_table.config_hash(b)
    assert compare_table.config_hash(a) != compare_table.config_hash(c)
    assert len(compare_table.config_hash(a)) == 12 and int(compare_table.config_hash(a), 16) >= 0


def test_markdown_table_rows_cells_and_skipped_rows():
    cols = compare_table.ACCURACY
    rows = [
        _row("panda", "avips", position_error_mean_mm=12.345, success_rate_raw=0.25),
        compare_table.skipped_row("talos", "gan", "skipped", "not supported: a|b"),
    ]
    lines = compare_table.markdown_table(rows, cols).splitlines()
    assert len(lines) == 2 + len(rows)
    for line in lines:  # every line has robot, method and one cell per column
        assert line.replace("\\|", "").count("|") == len(cols) + 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:5] == ["panda", "avips", "12.35", "n/a", "25.0%"]
    assert "skipped (see notes)" in lines[3]
    assert compare_table.notes(rows) == ["talos / gan: skipped: not supported: a|b"]
    with pytest.raises(ValueError, match="status"):
        compare_table.skipped_row("panda", "avips", "ok", "")


def test_csv_round_trips_numbers_and_leaves_missing_cells_empty():
    rows = [
        _row("panda", "flow", elbo=-1.0 / 3.0, num_parameters=177248, entropy=float("nan")),
        compare_table.skipped_row("talos", "flow", "skipped", 'needs "contexts_from_joints", x'),
    ]
    parsed = list(csv.DictReader(io.StringIO(compare_table.csv_text(rows))))
    assert list(parsed[0]) == [c.key for c in compare_table.CSV_COLUMNS]
    assert float(parsed[0]["elbo"]) == -1.0 / 3.0  # unrounded
    assert parsed[0]["num_parameters"] == "177248"
    assert parsed[0]["entropy"] == "" and parsed[0]["mmd"] == ""
    assert parsed[1]["note"] == 'needs "contexts_from_joints", x'
    assert parsed[1]["status"] == "skipped"


def test_coverage_columns_in_markdown_and_csv_with_missing_values_as_na():
    rows = [
        _row("panda", "avips", coverage_distance=0.5, coverage_distance_restarts=0.4,
             coverage_ratio=1.25, converged_fraction_5it=0.5, converged_fraction_30it=1.0),
        _row("talos", "avips", coverage_ratio=float("nan")),  # no refinement on TALOS
    ]  # fmt: skip
    assert {c.key for c in compare_table.COVERAGE} <= set(compare.METRIC_KEYS)
    md = compare_table.markdown_tables(rows)
    assert "### Coverage of the IK solution set" in md
    lines = compare_table.markdown_table(rows, compare_table.COVERAGE).splitlines()
    assert "coverage ratio" in lines[0] and "converged @5 LM it." in lines[0]
    assert lines[2] == "| panda | avips | 0.5 | 0.4 | 1.25 | 50.0% | 100.0% |"
    assert lines[3] == "| talos | avips | n/a | n/a | n/a | n/a | n/a |"
    parsed = list(csv.DictReader(io.StringIO(compare_table.csv_text(rows))))
    assert parsed[0]["coverage_ratio"] == "1.25" and parsed[0]["converged_fraction_5it"] == "0.5"
    assert parsed[1]["coverage_ratio"] == "" and parsed[1]["converged_fraction_30it"] == ""


# --- claims ----------------------------------------------------------------------------------


def test_verdict_is_a_conjunction():
    yes, no, unknown = (compare_claims.Check(h, "") for h in (True, False, None))
    assert compare_claims.verdict((yes, yes)) == R
    assert compare_claims.verdict((yes, unknown)) == NM
    assert compare_claims.verdict((unknown, no)) == NR
    assert compare_claims.verdict(()) == NM


def _error_rows(values: dict) -> list[dict]:
    return [_row(robot, method, position_error_mean_mm=v) for (robot, method), v in values.items()]


def test_claim_lower_error_than_flow_and_gan():
    values = {(r, m): 10.0 for r in ("panda", "valkyrie") for m in ("flow", "gan")}
    values |= {("panda", "avips"): 5.0, ("valkyrie", "avips"): 9.9}
    fn = compare_claims.claim_lower_error_than_flow_and_gan
    claim = _claim(_error_rows(values), fn)
    assert claim.verdict == R and len(claim.checks) == 4
    assert "valkyrie: position_error_mean_mm avips 9.9 vs gan 10: yes" in claim.checks[3].text
    assert _claim(_error_rows(values | {("valkyrie", "gan"): 9.0}), fn).verdict == NR
    partial = {k: v for k, v in values.items() if k != ("valkyrie", "gan")}
    assert _claim(_error_rows(partial), fn).verdict == NM
    # A failed run counts as missing; a NaN metric too.
    failed = _error_rows(partial) + [compare_table.skipped_row("valkyrie", "gan", "failed", "x")]
    assert _claim(failed, fn).verdict == NM
    assert _claim(_error_rows(values | {("panda", "gan"): float("nan")}), fn).verdict == NM


def test_claims_on_atlas():
    rows = _error_rows({("atlas", "flow"): 3.0, ("atlas", "avips"): 4.0})
    assert _claim(rows, compare_claims.claim_flow_better_on_atlas).verdict == R
    rows = _error_rows({("atlas", "flow"): 5.0, ("atlas", "avips"): 4.0})
    assert _claim(rows, compare_claims.claim_flow_better_on_atlas).verdict == NR
    rows = [_row("atlas", "avips", elbo=-3.0), _row("atlas", "vanilla_gmm", elbo=-5.0)]
    assert _claim(rows, compare_claims.claim_higher_elbo_on_atlas).verdict == R
    rows[0]["elbo"] = -6.0
    assert _claim(rows, compare_claims.claim_higher_elbo_on_atlas).verdict == NR


def test_claim_more_diverse_uses_mmd_and_falls_back_to_pairwise_distance():
    def rows(mmd_avips, pairwise_talos):
        return [
            _row("panda", "avips", entropy=2.0, mmd=mmd_avips, mean_pairwise_joint_distance=0.1),
            _row("panda", "vanilla_gmm", entropy=1.0, mmd=0.2, mean_pairwise_joint_distance=0.5),
            _row("talos", "avips", entropy=2.0, mean_pairwise_joint_distance=pairwise_talos),
            _row("talos", "vanilla_gmm", entropy=1.0, mean_pairwise_joint_distance=0.5),
        ]

    fn, robots = compare_claims.claim_more_diverse_than_vanilla, ("panda", "talos")
    claim = _claim(rows(0.1, 0.6), fn, robots)
    assert claim.verdict == R  # panda: lower MMD although the pairwise distance is lower
    assert "talos: mean_pairwise_joint_distance avips 0.6" in claim.checks[3].text
    assert _claim(rows(0.3, 0.6), fn, robots).verdict == NR
    assert _claim(rows(0.1, 0.4), fn, robots).verdict == NR
    assert _claim(rows(0.1, 0.6), fn, ("panda", "talos", "atlas")).verdict == NM


def test_claim_pruning_gives_smaller_models():
    def rows(active_slots, in_use):
        return [
            _row("panda", "avips", num_active_slots=active_slots, max_components=8,
                 num_parameters_in_use=in_use),
            _row("panda", "vanilla_gmm", num_active_slots=8, max_components=8,
                 num_parameters_in_use=1000),
        ]  # fmt: skip

    fn = compare_claims.claim_pruning_gives_smaller_models
    assert _claim(rows(3, 400), fn, ("panda",)).verdict == R
    assert _claim(rows(8, 400), fn, ("panda",)).verdict == NR
    assert _claim(rows(3, 1000), fn, ("panda",)).verdict == NR
    assert _claim(rows(3, 400), fn, ("panda", "atlas")).verdict == NM


def test_claim_single_gaussian_best_on_the_4dof_arm():
    fn = compare_claims.claim_single_gaussian_best_on_4dof
    arm = "valkyrie_arm"
    values = {(arm, "avips"): 2.0, (arm, "single_gaussian"): 3.0, (arm, "flow"): 2.5}
    values[(arm, "single_gaussian_noproj")] = 1.0
    claim = _claim(_error_rows(values), fn)
    assert claim.verdict == R
    assert "single_gaussian_noproj 1 vs avips 2: yes" in claim.checks[0].text
    assert _claim(_error_rows(values | {(arm, "flow"): 0.5}), fn).verdict == NR
    only_single = {k: v for k, v in values.items() if k[1].startswith("single")}
    assert _claim(_error_rows(only_single), fn).verdict == NM
    assert _claim(_error_rows({(arm, "avips"): 2.0}), fn).verdict == NM


def test_claim_gmms_beat_single_gaussian_elsewhere():
    fn = compare_claims.claim_gmms_beat_single_gaussian
    values = {
        ("panda", "avips"): 9.0,
        ("panda", "vanilla_gmm"): 4.0,  # the better GMM
        ("panda", "single_gaussian"): 5.0,
        ("valkyrie_arm", "avips"): 9.0,  # ignored: the 4-DOF arm is claim 6
        ("valkyrie_arm", "single_gaussian"): 1.0,
    }
    claim = _claim(_error_rows(values), fn, ("panda", "valkyrie_arm"))
    assert claim.verdict == R and len(claim.checks) == 1
    assert _claim(_error_rows(values | {("panda", "single_gaussian_noproj"): 3.0}), fn,
                  ("panda",)).verdict == NR  # fmt: skip
    assert _claim(_error_rows(values), fn, ("panda", "atlas")).verdict == NM


def test_claim_two_to_three_components_bounds():
    fn = compare_claims.claim_two_to_three_components
    for mean, expected in ((2.0, R), (3.0, R), (2.5, R), (1.99, NR), (3.01, NR)):
        rows = [_row("panda", "avips", active_components_mean=mean)]
        rows.append(_row("valkyrie_arm", "avips", active_components_mean=1.0))  # not counted
        assert _claim(rows, fn, ("panda", "valkyrie_arm")).verdict == expected, mean


def _full_table() -> list[dict]:
    """A synthetic table built so that every claim holds."""
    rows = []
    for robot in compare_claims.ALL_ROBOTS:
        arm, atlas = robot == "valkyrie_arm", robot == "atlas"
        avips = dict(position_error_mean_mm=5.0 if arm else 4.0, entropy=2.0, mmd=0.1,
                     mean_pairwise_joint_distance=1.0, elbo=1.0, num_active_slots=3,
                     max_components=8, num_parameters_in_use=300,
                     active_components_mean=1.0 if arm else 2.5)  # fmt: skip
        vanilla = dict(position_error_mean_mm=6.0, entropy=1.0, mmd=0.2, elbo=0.0,
                       mean_pairwise_joint_distance=0.5, num_active_slots=8, max_components=8,
                       num_parameters_in_use=800)  # fmt: skip
        rows += [_row(robot, "avips", **avips), _row(robot, "vanilla_gmm", **vanilla)]
        rows.append(_row(robot, "single_gaussian", position_error_mean_mm=1.0 if arm else 7.0))
        rows.append(_row(robot, "flow", position_error_mean_mm=3.0 if atlas else 8.0))
        rows.append(_row(robot, "gan", position_error_mean_mm=9.0))
    return rows


def test_evaluate_claims_all_reproduced_or_all_not_measured():
    claims = compare_claims.evaluate_claims(_full_table())
    assert len(claims) == 8
    assert [c.verdict for c in claims] == [R] * 8, compare_claims.claims_markdown(claims)
    assert [c.verdict for c in compare_claims.evaluate_claims([])] == [NM] * 8
    text = compare_claims.claims_markdown(claims)
    assert text.startswith("1. aVIPS has a lower position error") and "**reproduced**" in text
    assert "atlas: position_error_mean_mm flow 3 vs avips 4: yes" in text


# --- figure ----------------------------------------------------------------------------------


def test_grid_shape_and_shared_limits():
    shapes = [compare_figure.grid_shape(n) for n in (1, 3, 4, 5, 8, 9)]
    assert shapes == [(1, 1), (1, 3), (1, 4), (2, 4), (2, 4), (3, 4)]
    with pytest.raises(ValueError, match="num_panels"):
        compare_figure.grid_shape(0)
    a = np.array([[[0.0, 0.0, 0.0], [1.0, 0.5, 0.0]]])
    b = np.array([[[np.nan, 0.0, 0.0], [0.0, -1.0, 0.2]]])  # NaN rows are left out
    centre, half = compare_figure.shared_limits([a, b], np.array([0.0, 0.0, 2.0]))
    np.testing.assert_allclose(centre, [0.5, -0.25, 1.0])
    assert half == 1.0


def test_plot_solution_grid_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    panels = [
        compare_figure.Panel("avips", rng.normal(size=(6, 4, 3)), np.array([0, 0, 1, 1, 2, 2])),
        compare_figure.Panel("gan", rng.normal(size=(5, 4, 3))),
    ]
    path = compare_figure.plot_solution_grid(
        tmp_path / "f" / "grid.png", panels, [(0, 1), (1, 2), (2, 3)], np.zeros(3), title="t"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="bad"):
        compare_figure.plot_solution_grid(
            tmp_path / "x.png", [compare_figure.Panel("bad", np.zeros((4, 3)))], [], np.zeros(3),
            title="t",
        )  # fmt: skip


# --- configs, settings, parameters -----------------------------------------------------------


@pytest.mark.parametrize("method", presets.METHODS)
def test_method_config_equals_the_config_file_spec(method):
    via_spec = panda.get_config(f"quick,{method}")
    ours = compare.method_config("panda", method, "quick")
    assert checkpoint.config_differences(via_spec, ours) == []


def test_method_config_on_talos_and_overrides():
    config = compare.method_config("talos", "vanilla_gmm", "quick", num_steps=7, seed=3)
    base = talos.get_config("quick")
    assert config.method == "vanilla_gmm" and config.target.name == "talos"
    assert config.train.num_steps == 7 and config.seed == 3
    assert config.train.batch_contexts == base.train.batch_contexts
    assert not config.projection.enabled and not config.components.remove


def test_set_overrides_reach_the_config_with_the_field_types():
    overrides = ("train.gate_lr=3e-4", "train.batch_contexts=32", "model.component_hidden=(8,)")
    config = compare.method_config("panda", "avips", "quick", overrides=overrides)
    assert config.train.gate_lr == 3e-4 and config.train.batch_contexts == 32
    assert tuple(config.model.component_hidden) == (8,)
    as_list = compare.method_config(
        "panda", "avips", "quick", overrides=("model.component_hidden=[16, 16]",)
    )
    assert tuple(as_list.model.component_hidden) == (16, 16)
    as_float = compare.method_config("panda", "avips", "quick", overrides=("train.gate_lr=1",))
    assert isinstance(as_float.train.gate_lr, float) and as_float.train.gate_lr == 1.0


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.gat_lr=1e-3", "unknown config key 'train.gat_lr'"),
        ("trian.gate_lr=1e-3", "unknown config key 'trian.gate_lr'"),
        ("train=3", "unknown config key 'train'"),
        ("train.gate_lr", "is not of the form key=value"),
        ("train.gate_lr=fast", "train.gate_lr is a float, got a str"),
    ],
)
def test_bad_set_overrides_raise_naming_the_key(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        compare.method_config("panda", "avips", "quick", overrides=(override,))


def test_every_method_runs_on_talos_and_unsupported_jobs_are_skipped_with_the_reason():
    reasons = {
        m: compare.unsupported_reason(compare.method_config("talos", m, "quick"))
        for m in ("avips", "gan", "flow", "gan_no_disc", "flow_reverse_kl")
    }
    # gan and flow learn from valid pairs, which TALOS has as optimised standing postures.
    assert reasons == dict.fromkeys(reasons)
    toy = compare.method_config("talos", "flow", "quick")
    toy.target.name, toy.target.kwargs = "moving_gmm", {}
    reason = compare.unsupported_reason(toy)
    assert "contexts_from_joints" in reason and "flow_reverse_kl" in reason
    settings = compare.Settings(robots=("talos",), methods=("flow",), runs_dir="/nonexistent")
    job = compare.Job("talos", "flow", toy, pathlib.Path("/nonexistent"), reason)
    row, panel = compare.run_job(job, settings)
    assert row["status"] == "skipped" and "not supported" in row["note"] and panel is None


def test_check_settings_names_the_problem():
    with pytest.raises(ValueError, match="robot.*'pr2'"):
        compare.check_settings(compare.Settings(robots=("pr2",)))
    with pytest.raises(ValueError, match="method.*'vae'"):
        compare.check_settings(compare.Settings(methods=("avips", "vae")))
    with pytest.raises(ValueError, match="num_steps"):
        compare.check_settings(compare.Settings(num_steps=0))
    with pytest.raises(ValueError, match="samples_per_target"):
        compare.check_settings(compare.Settings(samples_per_target=1))


def _gmm(num_components: int, active: list[bool]) -> model.AmortizedGMM:
    module = networks.make_gmm_network(
        num_components, 4, np.zeros(4), np.ones(4), component_hidden=(5,), gate_hidden=(6,)
    )
    variables = networks.init_gmm_network(jax.random.PRNGKey(0), module, 3)
    return model.AmortizedGMM(module, variables, np.array(active), 3)


def test_parameters_in_use_equals_the_smaller_network():
    # 2 active slots of 3 use as many parameters as a 2-slot network of the same widths.
    three, two = _gmm(3, [True, False, True]), _gmm(2, [True, True])
    assert compare.parameters_in_use(three) == two.num_parameters < three.num_parameters
    assert compare.parameters_in_use(two) == two.num_parameters


def test_report_markdown_sections_and_relative_figure_links(tmp_path):
    rows = _full_table()[:3] + [compare_table.skipped_row("talos", "gan", "skipped", "why")]
    for r in rows[:3]:
        r |= {"sigma_pos_mm": 10.0, "num_targets": 3, "samples_per_target": 8, "test_seed": 1}
    settings = compare.Settings(robots=("panda",), num_steps=20)
    header = compare_report.header_markdown(rows, settings, "python -m x", "cpu", "today")
    claims = compare_claims.evaluate_claims(rows)
    figure = tmp_path / "out" / "cmp_panda.png"
    text = compare_report.report_markdown(rows, claims, [figure], header, tmp_path / "out")
    assert "Generated by `python -m x` on today" in text
    assert "panda 10 mm" in text and "3 targets x 8 samples, seed 1" in text
    assert "20 (override)" in text and "- talos / gan: skipped: why" in text
    assert "![cmp_panda](cmp_panda.png)" in text
    assert text.count("**not measured**") + text.count("**reproduced**") == 8


# --- end to end ------------------------------------------------------------------------------

SMOKE_METHODS = ("avips", "vanilla_gmm", "gan_no_disc")


@pytest.mark.slow
def test_cli_trains_evaluates_and_writes_the_report_then_loads(tmp_path):
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    args = [
        "--robots=panda",
        f"--methods={','.join(SMOKE_METHODS)}",
        "--num_steps=20",
        "--num_targets=3",
        "--samples_per_target=8",
        "--nolatency",
        "--norefine",
        "--noprogress_bar",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--out={tmp_path / 'res' / 'comparison'}",
    ]
    cmd = [sys.executable, "-m", "experiments.compare", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = (tmp_path / "res" / "comparison.md").read_text()
    rows = list(csv.DictReader((tmp_path / "res" / "comparison.csv").open()))
    png = tmp_path / "res" / "comparison_panda.png"
    assert png.stat().st_size > 10_000
    assert [(r["robot"], r["method"], r["status"]) for r in rows] == [
        ("panda", m, "ok") for m in SMOKE_METHODS
    ]
    for method in SMOKE_METHODS:
        assert f"| panda | {method} |" in md
        metrics = json.loads((tmp_path / "runs" / "panda" / method / "metrics.json").read_text())
        row = next(r for r in rows if r["method"] == method)
        assert float(row["position_error_mean_mm"]) == metrics["position_error_mean_mm"]
        assert row["train_steps"] == "20" and row["trained"] == "here"
    gan = next(r for r in rows if r["method"] == "gan_no_disc")
    assert gan["elbo"] == "" and gan["active_components_mean"] == ""
    assert math.isfinite(float(rows[0]["elbo"])) and rows[0]["max_components"] == "8"
    assert " ".join(args) in md and "## The paper's claims" in md
    # Again: every run is finished, so it is loaded and evaluated, not trained.
    settings = compare.Settings(
        robots=("panda",), methods=SMOKE_METHODS, num_steps=20, num_targets=3,
        samples_per_target=8, runs_dir=str(tmp_path / "runs"), out=str(tmp_path / "again"),
        refine=False, latency=False, progress_bar=False,
    )  # fmt: skip
    compare.run_comparison(settings, "again")
    again = list(csv.DictReader((tmp_path / "again.csv").open()))
    assert [r["trained"] for r in again] == ["loaded"] * 3
    assert [r["config_hash"] for r in again] == [r["config_hash"] for r in rows]
    # A smaller budget in the same run directories is refused before anything is trained (a
    # larger one continues the finished runs: avips_jax/run.py).
    from avips_jax import run

    with pytest.raises(run.ConfigMismatchError, match="train.num_steps: saved 20, given 19"):
        compare.run_comparison(compare.Settings(**{**settings.__dict__, "num_steps": 19}), "x")
