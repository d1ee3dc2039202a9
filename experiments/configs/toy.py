"""Configs for the conditional toy targets.

Usage: `--config=experiments/configs/toy.py:moving_gmm` (also spiral_gmm, banana, funnel), with
overrides such as `--config.train.num_steps=500`.
"""

import ml_collections

from avips_jax.config import default_config


def get_config(target: str = "moving_gmm") -> ml_collections.ConfigDict:
    c = default_config()
    c.target.name = target
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
        raise ValueError(
            f"Unknown toy target {target!r}; choose moving_gmm, spiral_gmm, banana or funnel."
        )
    return c
