"""Each plot writes a real PNG of about the size its figure asks for; bad input is refused."""

import json
import struct

import numpy as np
import pytest

from avips_jax import plots


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _check(path, inches):
    """A PNG within 25% of figsize x DPI in each direction (bbox_inches='tight' trims a bit)."""
    assert path.is_file() and path.stat().st_size > 5_000
    width, height = _png_size(path)
    want_w, want_h = inches[0] * plots.DPI, inches[1] * plots.DPI
    assert 0.75 * want_w < width < 1.25 * want_w, (width, want_w)
    assert 0.75 * want_h < height < 1.25 * want_h, (height, want_h)


def test_solutions_3d(tmp_path):
    rng = np.random.default_rng(0)
    points = np.cumsum(rng.normal(0, 0.1, size=(12, 5, 3)), axis=1)
    edges = [(i, i + 1) for i in range(4)]
    out = plots.plot_solutions_3d(
        tmp_path / "sub" / "sol.png", points, edges, np.array([0.3, 0.1, 0.2]), np.arange(12) % 3
    )
    assert out == tmp_path / "sub" / "sol.png"
    _check(out, (7, 6.5))
    _check(plots.plot_solutions_3d(tmp_path / "plain.png", points, edges, np.zeros(3)), (7, 6.5))
    with pytest.raises(ValueError, match=r"\(n, P, 3\)"):
        plots.plot_solutions_3d(tmp_path / "bad.png", points[..., :2], edges, np.zeros(3))


def test_error_histogram_with_nonfinite_values(tmp_path):
    errors = np.r_[np.random.default_rng(1).lognormal(0, 1, 200), np.nan]
    _check(plots.plot_error_histogram(tmp_path / "hist.png", errors), (7, 4.5))
    _check(plots.plot_error_histogram(tmp_path / "const.png", np.full(5, 2.0)), (7, 4.5))


def test_component_weights(tmp_path):
    w = np.random.default_rng(2).dirichlet(np.ones(4), size=15)
    w = np.concatenate([w, np.zeros((15, 2))], axis=1)  # two inactive slots
    _check(plots.plot_component_weights(tmp_path / "w.png", w), (12, 4.5))
    with pytest.raises(ValueError, match=r"\(T, K\)"):
        plots.plot_component_weights(tmp_path / "bad.png", w[0])


def test_training_curves_from_history_jsonl(tmp_path):
    path = tmp_path / "history.jsonl"
    records = [
        {
            "step": s,
            "elbo": -100.0 / s,
            "position_error_mm": 50.0 / s,
            "num_active": 4,
            "eps_mean_mean": 0.1,
            "eps_mean_min": 0.05,
            "eps_mean_max": 0.2,
            "eps_cov": [0.01, 0.02, 0.0],  # per-slot list (inactive slot 0)
        }
        for s in range(1, 6)
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    history = plots.read_history(path)
    assert history == records
    _check(plots.plot_training_curves(tmp_path / "train.png", history), (11, 7.5))
    # Missing series are allowed (their panels say "not logged").
    _check(plots.plot_training_curves(tmp_path / "few.png", [{"step": 1, "elbo": -1.0}]), (11, 7.5))


def test_read_history_names_the_bad_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 1}\n{not json\n')
    with pytest.raises(ValueError, match=r"history.jsonl:2"):
        plots.read_history(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="not a JSON object"):
        plots.read_history(path)
    with pytest.raises(FileNotFoundError):
        plots.read_history(tmp_path / "missing.jsonl")
