"""benchmarks/components_cost.py: its configs (the timing itself is benchmarks/train_step's)."""

import pytest

from benchmarks import components_cost


def test_configs_set_k_max_and_keep_every_slot_active():
    avips = components_cost.panda_config("avips", 16)
    vanilla = components_cost.panda_config("vanilla_gmm", 16)
    assert avips.model.num_components == avips.model.initial_components == 16
    assert vanilla.method == "vanilla_gmm" and vanilla.model.initial_components == 16
    assert avips.projection.covariance and not vanilla.projection.enabled
    with pytest.raises(ValueError, match="num_components"):
        components_cost.panda_config("avips", 0)


def test_table_gives_ratios_to_the_first_k_and_to_the_vanilla_gmm(monkeypatch):
    fake_ms = {("vanilla_gmm", 8): 10.0, ("avips", 8): 20.0, ("vanilla_gmm", 16): 20.0}
    fake_ms["avips", 16] = 50.0

    def fake_times(config, steps):
        best = fake_ms[config.method, config.model.num_components] / 1e3
        return 1.0, [3 * best, best, 2 * best]  # best, and a median twice the best

    monkeypatch.setattr(components_cost.train_step, "step_times", fake_times)
    lines = components_cost.table_lines([8, 16], ["vanilla_gmm", "avips"], steps=3)
    assert "| avips | 8 | 1.0 | 20.0 | 40.0 | 1.00x | 2.00x |" in lines
    assert "| avips | 16 | 1.0 | 50.0 | 100.0 | 2.50x | 2.50x |" in lines
    assert "| vanilla_gmm | 16 | 1.0 | 20.0 | 40.0 | 2.00x |  |" in lines


def test_breakdown_switches_parts_off_cumulatively(monkeypatch):
    seen = []

    def fake_times(config, steps):
        seen.append(
            (
                config.trust_region.adaptive,
                config.projection.covariance,
                config.projection.alpha,
                config.projection.enabled,
                config.sir.enabled,
            )
        )
        return 1.0, [0.020 - 0.002 * len(seen)]  # each switch saves 2 ms

    monkeypatch.setattr(components_cost.train_step, "step_times", fake_times)
    lines = components_cost.breakdown_lines(8, steps=1)
    assert seen[0] == (True, True, 1.0, True, True)  # the preset
    assert seen[-1] == (False, False, 0.0, False, False)  # every switch applied
    assert len(seen) == len(components_cost.BREAKDOWN)
    assert lines[2] == "| aVIPS (preset) | 18.0 |  |"
    assert lines[3] == "| fixed bounds (no paired improvement test) | 16.0 | 2.0 |"
