"""Configs for the conditional toy targets.

Usage: `--config=experiments/configs/toy.py:<target>[,<preset>]`, e.g. `toy.py:banana`,
`toy.py:banana,quick` or `toy.py:quick` (moving_gmm); targets moving_gmm (default), spiral_gmm,
banana, funnel; presets
  full (default): the settings of the toy experiments (they already run on a CPU in minutes);
  quick: a tenth of the steps (smoke runs);
  test: tiny networks and 8 steps (integration tests of the training CLI).
Override fields with e.g. `--config.train.num_steps=500`.
"""

import ml_collections

from avips_jax import presets
from avips_jax.config import thesis_config

TARGETS = ("moving_gmm", "spiral_gmm", "banana", "funnel")
PRESETS = ("full", "quick", "test")


def _target_settings(c: ml_collections.ConfigDict, target: str) -> None:
    if target == "moving_gmm":
        # 4 modes on a circle of radius ~3 in a box of half-width 7.4: broad initial components
        # (std 2) overlap the modes, so no slot starts in a region of negligible target mass.
        # Start with fewer slots than modes: adding finds the missing ones (tests rely on it).
        c.model.num_components = 8
        c.model.initial_components = 2
        c.model.init_std = 2.0
        c.train.num_steps = 4000
    elif target == "spiral_gmm":
        c.model.num_components = 16
        c.model.initial_components = 10
        c.model.init_std = 1.0
        c.model.component_hidden = (128, 128)
        c.train.num_steps = 20000
    elif target == "banana":
        c.model.num_components = 10
        c.model.initial_components = 5
        c.model.init_std = 3.0
        c.train.num_steps = 10000
    elif target == "funnel":
        c.model.num_components = 6
        c.model.initial_components = 3
        c.model.init_std = 1.0
        c.target.kwargs.context_dim = 2
        c.train.num_steps = 10000
    else:
        raise ValueError(f"Unknown toy target {target!r}; choose {', '.join(TARGETS)}.")


def _apply_preset(c: ml_collections.ConfigDict, preset: str) -> None:
    if preset == "quick":
        c.train.num_steps = max(c.train.num_steps // 10, 100)
        c.train.log_every = 50
        c.train.checkpoint_every = 200
        c.components.check_every = 50
        c.components.add_every = 100
        c.eval.num_targets = 100
    elif preset == "test":
        c.model.num_components = 3
        c.model.initial_components = 2
        c.model.component_hidden = (16,)
        c.model.gate_hidden = (16,)
        c.train.num_steps = 8
        c.train.batch_contexts = 8
        c.train.samples_per_component = 2
        c.train.log_every = 1
        c.train.log_samples = 4
        c.train.checkpoint_every = 4
        c.components.check_every = 2
        c.components.add_every = 3
        c.components.fit_steps = 5
        c.components.merge_tolerance = 0.0  # one compiled removal step fewer
        c.sir.num_candidates = 16
        c.sir.num_resampled = 4
        c.eval.num_targets = 4
        c.eval.samples_per_target = 8


def get_config(spec: str = "moving_gmm") -> ml_collections.ConfigDict:
    """The config of "<target>[,<preset>]" (see the module docstring)."""
    target, preset = presets.split_spec(spec, PRESETS, "full")
    c = thesis_config()
    c.target.name = target or "moving_gmm"
    _target_settings(c, c.target.name)
    _apply_preset(c, preset)
    return c
