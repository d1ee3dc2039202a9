"""experiments/ablate_toy.py: its variants name real config fields, and the seed medians."""

import functools

import pytest

from experiments import ablate_toy


@pytest.mark.parametrize("target", ["moving_gmm", "planar"])
def test_every_variant_overrides_existing_fields_with_their_type(target):
    for name, overrides in ablate_toy.VARIANTS:
        # apply_overrides refuses unknown keys and values of another type.
        config = ablate_toy.variant_config(target, overrides, seed=3, steps_scale=0.5)
        for field, value in overrides.items():
            node = functools.reduce(getattr, field.split("."), config)
            assert type(node) is type(value) and node == value, (name, field, node, value)
        assert config.seed == 3
    # Both configs project the covariance, so the full method is the paper's.
    assert ablate_toy.variant_config(target, {}, 0, 1.0).projection.covariance
    with pytest.raises(ValueError, match="unknown config key"):
        ablate_toy.variant_config(target, {"projection.covarianse": True}, 0, 1.0)


def _row(variant, seed, elbo):
    return ablate_toy.Row("planar", variant, seed, elbo, "1.00 clusters", "", 1, 1.0, 10.0)


def test_several_seeds_add_a_median_table():
    rows = [_row("full aVIPS", s, e) for s, e in [(0, -17.0), (1, -15.0), (2, -16.0)]]
    text = ablate_toy.to_markdown(rows, ["ablate_toy", "--seeds=0,1,2"])
    assert "| planar | full aVIPS | 1 | -15 |" in text
    assert "| planar | full aVIPS | -16 (-17, -15, -16) |" in text
    one_seed = ablate_toy.to_markdown(rows[:1], ["ablate_toy"])
    assert "Medians" not in one_seed


def test_unknown_variants_are_refused_before_training():
    with pytest.raises(ValueError, match="unknown variants.*no projektion"):
        ablate_toy.run(["planar"], 1.0, [0], 4, variants=("no projektion",))
