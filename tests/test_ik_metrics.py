"""Each IK metric against a hand-derivable case or an independent numpy reference."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from avips_jax import ik_metrics

pytestmark = pytest.mark.usefixtures("fast_compiles")  # compile time dominates

C, A = ik_metrics.IKFLOW_KERNEL_C, ik_metrics.IKFLOW_KERNEL_A


def _numpy_mmd(x, y):
    """The IKFlow estimator written out independently (double loop over pairs, float64)."""

    def k(a, b):
        d2 = np.sum((a[:, None, :] - b[None, :, :]) ** 2, -1)
        return C**A * ((C + d2) / A) ** (-A)

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def test_error_stats_match_numpy_and_report_nonfinite():
    rng = np.random.default_rng(0)
    err = rng.exponential(0.01, size=(7, 13))
    stats = ik_metrics.position_error_stats(err)
    np.testing.assert_allclose(stats["mean_mm"], 1e3 * err.mean(), rtol=1e-12)
    np.testing.assert_allclose(stats["median_mm"], 1e3 * np.median(err), rtol=1e-12)
    np.testing.assert_allclose(stats["p95_mm"], 1e3 * np.percentile(err, 95), rtol=1e-12)
    assert stats["nonfinite_fraction"] == 0.0

    with_nan = np.array([0.001, np.nan, 0.003, np.inf])
    stats = ik_metrics.position_error_stats(with_nan)
    assert stats["mean_mm"] == pytest.approx(2.0)
    assert stats["nonfinite_fraction"] == 0.5
    ang = ik_metrics.orientation_error_stats(np.array([np.pi, np.pi / 2]))
    assert ang["mean_deg"] == pytest.approx(135.0)
    with pytest.raises(ValueError, match="empty"):
        ik_metrics.error_stats(np.zeros(0))


def test_success_rate_counts_nan_as_failure_and_uses_both_thresholds():
    pos = np.array([0.005, 0.02, np.nan, 0.0099])
    assert ik_metrics.success_rate(pos, 0.01) == 0.5
    ang = np.array([0.01, 0.0, 0.0, 0.5])
    assert ik_metrics.success_rate(pos, 0.01, ang, 0.1) == 0.25
    with pytest.raises(ValueError, match="threshold_rad"):
        ik_metrics.success_rate(pos, 0.01, ang)
    with pytest.raises(ValueError, match="orientation errors"):
        ik_metrics.success_rate(pos, 0.01, ang[:2], 0.1)


def test_joint_limit_violations_on_constructed_points():
    lower, upper = np.array([-1.0, 0.0]), np.array([1.0, 2.0])
    q = np.array(
        [
            [0.0, 1.0],  # inside
            [1.0, 2.0],  # on the limits: inside
            [1.01, 1.0],  # joint 0 above
            [0.0, -0.5],  # joint 1 below
            [np.nan, 1.0],  # non-finite counts as a violation
        ]
    )
    assert ik_metrics.joint_limit_violation_percent(q, lower, upper) == pytest.approx(60.0)
    assert ik_metrics.joint_limit_violation_percent(q, lower, upper, tol=0.02) == pytest.approx(
        40.0
    )
    with pytest.raises(ValueError, match="limits"):
        ik_metrics.joint_limit_violation_percent(q[:, :1], lower, upper)


def test_elbo_and_entropy_of_a_gaussian_matching_its_target():
    # q = p = N(0, 1): ELBO = log Z = 0 and H = 0.5 log(2 pi e).
    x = np.random.default_rng(1).standard_normal((4, 50_000))
    log_n = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    elbo, entropy = ik_metrics.elbo_and_entropy(log_n, log_n)
    assert elbo == 0.0
    assert entropy == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.01)
    # An unnormalised target p = 3 N(0, 1): ELBO = log 3 exactly on every sample.
    elbo, _ = ik_metrics.elbo_and_entropy(log_n + math.log(3.0), log_n)
    assert elbo == pytest.approx(math.log(3.0))
    with pytest.raises(ValueError, match="must both be"):
        ik_metrics.elbo_and_entropy(log_n[0], log_n[0])


def test_ikflow_kernel_hand_values():
    # k(0) = C^a (C / a)^(-a) = a^a; decreasing in the squared distance.
    assert float(ik_metrics.ikflow_kernel(0.0)) == pytest.approx(A**A, rel=1e-6)
    values = np.asarray(ik_metrics.ikflow_kernel(np.array([0.0, 0.1, 1.0, 10.0])))
    assert np.all(np.diff(values) < 0)


def test_mmd_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 7)).astype(np.float32)
    assert abs(float(ik_metrics.mmd_ikflow(x, x))) < 1e-6
    shifted = [float(ik_metrics.mmd_ikflow(x, x + s)) for s in (0.25, 0.5, 1.0, 2.0)]
    assert shifted[0] > 1e-4
    assert np.all(np.diff(shifted) > 0), shifted
    y = rng.normal(size=(40, 7)).astype(np.float32) + 0.3
    assert float(ik_metrics.mmd_ikflow(x, y)) == pytest.approx(_numpy_mmd(x, y), rel=1e-4)


def test_mmd_of_two_points_by_hand():
    # x = {0}, y = {v}, |v|^2 = d2: MMD = k(0) + k(0) - 2 k(d2).
    d2 = 2.0
    v = np.array([[1.0, 1.0]], np.float32)
    expected = 2 * A**A - 2 * C**A * ((C + d2) / A) ** (-A)
    assert float(ik_metrics.mmd_ikflow(np.zeros((1, 2), np.float32), v)) == pytest.approx(
        expected, rel=1e-5
    )


def test_mmd_masks_drop_rows_and_batched_matches_single():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 20, 4)).astype(np.float32)
    y = rng.normal(size=(3, 25, 4)).astype(np.float32)
    y_mask = np.arange(25)[None].repeat(3, 0) < 15
    x_mask = np.arange(20)[None].repeat(3, 0) < np.array([[20], [12], [5]])
    y_garbage, x_garbage = y.copy(), x.copy()
    y_garbage[~y_mask] = 1e3  # masked rows must not matter
    x_garbage[~x_mask] = -1e3
    batched = ik_metrics.mmd_ikflow_batched(x_garbage, y_garbage, y_mask, x_mask, batch_size=2)
    for t, n in enumerate((20, 12, 5)):
        assert float(batched[t]) == pytest.approx(_numpy_mmd(x[t, :n], y[t, :15]), rel=1e-4)
    assert np.isnan(ik_metrics.mmd_ikflow(x[0], y[0], np.zeros(25, bool)))
    assert np.isnan(ik_metrics.mmd_ikflow(x[0], y[0], x_mask=np.zeros(20, bool)))


def test_mean_pairwise_distance_by_hand_and_against_scipy():
    line = np.array([[[0.0], [1.0], [3.0]]], np.float32)  # distances 1, 3, 2
    assert float(ik_metrics.mean_pairwise_distance(line)[0]) == pytest.approx(2.0)
    x = np.random.default_rng(4).normal(size=(5, 30, 7))
    got = np.asarray(ik_metrics.mean_pairwise_distance(x.astype(np.float32)))
    np.testing.assert_allclose(got, [pdist(xi).mean() for xi in x], rtol=1e-4)
    with pytest.raises(ValueError, match=">= 2 samples"):
        ik_metrics.mean_pairwise_distance(x[:, :1])


def test_nearest_distances_by_hand_with_a_mask():
    x = np.array([[0.0, 0.0], [3.0, 0.0]], np.float32)
    y = np.array([[3.0, 4.0], [1.0, 0.0], [3.0, 0.5]], np.float32)
    np.testing.assert_allclose(ik_metrics.nearest_distances(x, y), [1.0, 0.5], rtol=1e-6)
    masked = ik_metrics.nearest_distances(x, y, np.array([True, False, False]))
    np.testing.assert_allclose(masked, [5.0, 4.0], rtol=1e-6)
    assert np.all(np.isinf(ik_metrics.nearest_distances(x, y, np.zeros(3, bool))))


def test_nearest_distances_resolve_nearly_coincident_joint_vectors():
    # |q|^2 ~ 59: the expanded |x|^2 + |y|^2 - 2 x.y has a float32 floor of ~2e-3 here.
    x = np.full((1, 7), 2.9, np.float32)
    d = float(ik_metrics.nearest_distances(x, x + np.float32(1e-5))[0])
    assert d == pytest.approx(np.sqrt(7) * 1e-5, rel=0.05)


def test_nearest_distance_coverage_known_answers_masks_and_empty_sets():
    # Target 0: references 0 and 10 (a third one masked out), points 1 and 7 (100 masked out):
    # nearest distances 1 and 3, mean 2. Target 1: references but no valid point -> inf.
    # Target 2: no valid reference -> NaN.
    ref = np.array([[[0.0], [10.0], [1e3]]] * 3, np.float32)
    ref_mask = np.array([[True, True, False], [True, True, False], [False, False, False]])
    pts = np.array([[[1.0], [7.0], [100.0]]] * 3, np.float32)
    pts_mask = np.array([[True, True, False], [False, False, False], [True, True, True]])
    got = np.asarray(ik_metrics.nearest_distance_coverage(ref, ref_mask, pts, pts_mask))
    assert got[0] == pytest.approx(2.0) and np.isposinf(got[1]) and np.isnan(got[2])
    # A point on every reference: 0.
    same = ik_metrics.nearest_distance_coverage(ref, ref_mask, ref, ref_mask)
    assert float(same[0]) == 0.0


def test_nearest_distance_coverage_matches_brute_force_in_batches():
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(5, 40, 3)).astype(np.float32)
    pts = rng.normal(size=(5, 9, 3)).astype(np.float32)
    ref_mask, pts_mask = rng.random((5, 40)) < 0.7, rng.random((5, 9)) < 0.6
    pts_mask[:, 0] = True
    got = ik_metrics.nearest_distance_coverage(ref, ref_mask, pts, pts_mask, batch_size=2)
    for t in range(5):
        d = np.linalg.norm(ref[t][ref_mask[t]][:, None] - pts[t][pts_mask[t]][None], axis=-1)
        assert float(got[t]) == pytest.approx(d.min(axis=1).mean(), rel=1e-5)


def _blobs(rng, centres, sizes, std=0.1):
    pts = [c + std * rng.standard_normal((n, len(c))) for c, n in zip(centres, sizes, strict=True)]
    x = np.concatenate(pts).astype(np.float32)
    perm = rng.permutation(len(x))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return x[perm], labels[perm]


def test_greedy_clusters_count_separated_blobs_exactly():
    rng = np.random.default_rng(5)
    centres = [np.zeros(7), np.full(7, 3.0), np.r_[np.full(3, -3.0), np.zeros(4)]]
    x, labels = _blobs(rng, centres, [30, 20, 2])
    assert int(ik_metrics.greedy_clusters(x, radius=1.5)) == 3
    assert int(ik_metrics.greedy_clusters(x, radius=1.5, min_size=3)) == 2  # the pair drops
    assert int(ik_metrics.greedy_clusters(x, radius=1.5, mask=labels != 1)) == 2
    assert int(ik_metrics.greedy_clusters(x, radius=1.5, mask=np.zeros(52, bool))) == 0
    batched = ik_metrics.greedy_cluster_counts(
        np.stack([x, x]), 1.5, np.stack([labels < 3, labels == 0])
    )
    np.testing.assert_array_equal(np.asarray(batched), [3, 1])


def test_greedy_clusters_follow_the_documented_greedy_order():
    # Points 0, 0.9, 1.8 on a line, radius 1: the first point takes 0.9; 1.8 opens a second.
    x = np.array([[0.0], [0.9], [1.8]], np.float32)
    assert int(ik_metrics.greedy_clusters(x, radius=1.0)) == 2
    # Visiting 0.9 first takes all three.
    assert int(ik_metrics.greedy_clusters(x[[1, 0, 2]], radius=1.0)) == 1
    with pytest.raises(ValueError, match="min_size"):
        ik_metrics.greedy_clusters(x, radius=1.0, min_size=0)


def test_active_components():
    w = np.array([[0.5, 0.495, 0.005, 0.0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_array_equal(ik_metrics.active_components(w), [2, 4])


def test_best_time_warms_up_then_takes_the_minimum():
    calls = []

    def fn():
        calls.append(1)
        return np.zeros(3)

    seconds = ik_metrics.best_time(fn, repeats=4)
    assert len(calls) == 5  # one warm-up + 4 timed
    assert 0.0 <= seconds < 1.0
    with pytest.raises(ValueError, match="repeats"):
        ik_metrics.best_time(fn, repeats=0)


def test_masked_std_uses_only_the_valid_rows_of_each_target():
    x = np.array([[[0.0, 1.0], [2.0, 1.0], [100.0, -50.0]], [[1.0, 2.0], [5.0, 5.0], [3.0, 3.0]]])
    mask = np.array([[True, True, False], [True, False, False]])
    std = ik_metrics.masked_std(x, mask)
    np.testing.assert_allclose(std[0], [np.std([0.0, 2.0], ddof=1), 0.0])
    assert np.all(np.isnan(std[1]))  # one valid row: no spread defined
    np.testing.assert_allclose(
        ik_metrics.masked_std(x, np.ones((2, 3), bool)), np.std(x, axis=1, ddof=1)
    )
