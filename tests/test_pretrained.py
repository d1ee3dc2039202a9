"""The pretrained Panda model that ships with the package: it loads through the public API and
reaches the accuracy its metrics.json (written by scripts/make_pretrained.sh) states."""

import jax
import numpy as np
import pytest

import avips_jax
from avips_jax import ik_evaluation, ik_metrics, pretrained, run_report


@pytest.fixture(scope="module")
def solver():
    return avips_jax.IKSolver.pretrained("panda")


@pytest.fixture(scope="module")
def stated():
    return pretrained.metrics("panda")


def test_available_and_small():
    assert "panda" in pretrained.available()
    files = [p for p in pretrained.path("panda").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 2**20
    assert (pretrained.path("panda") / "README.md").is_file()


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(pretrained.PretrainedModelNotFoundError, match="'tiago'.*panda"):
        avips_jax.IKSolver.pretrained("tiago")
    with pytest.raises(FileNotFoundError):
        pretrained.path("../panda")


def test_loads_the_panda_model(solver, stated):
    assert solver.robot.name == "panda"
    assert solver.context == "position"
    assert stated["robot"] == "panda"
    q = solver.sample(jax.random.PRNGKey(0), [0.4, 0.1, 0.6], n=16)
    assert q.shape == (16, 7)
    assert np.all(np.isfinite(np.asarray(q)))


def test_reaches_the_stated_accuracy(solver, stated):
    # The same test set and sampling key as experiments/evaluate.py; the numbers can differ
    # across CPUs only by float rounding.
    seed = stated["test_seed"]
    contexts = run_report.make_test_contexts(solver.target, stated["num_targets"], seed)
    key_sample = jax.random.split(jax.random.PRNGKey(seed + 1), 3)[0]
    sol = ik_evaluation.sample_solutions(
        solver.model, solver.target, contexts, key_sample, stated["samples_per_target"]
    )
    got = ik_evaluation.accuracy_metrics(solver.target, sol)
    for name in ("position_error_mean_mm", "position_error_median_mm"):
        np.testing.assert_allclose(got[name], stated[name], rtol=0.02, err_msg=name)
    assert abs(got["success_rate_raw"] - stated["success_rate_raw"]) < 0.01
    elbo, _ = ik_metrics.elbo_and_entropy(sol.log_p, sol.log_q)
    np.testing.assert_allclose(elbo, stated["elbo"], atol=0.1)


def test_refinement_reaches_the_stated_success(solver, stated):
    contexts = run_report.make_test_contexts(solver.target, 10, stated["test_seed"])
    q = solver.sample(jax.random.PRNGKey(1), np.asarray(contexts), n=100, refine=True)
    err = np.asarray(solver.target.position_error(q, contexts[:, None]))
    assert np.mean(err < 1e-3) >= min(stated["success_rate_refined"], 0.99)
