"""Config for the conditional planar n-link IK target (context = end-effector goal)."""

import ml_collections

from avips_jax.config import default_config


def get_config(num_links: str = "10") -> ml_collections.ConfigDict:
    c = default_config()
    c.target.name = "planar"
    c.target.kwargs.num_links = int(num_links)
    # A CPU-sized task: goals in a sector in front of the arm, 5 cm likelihood (the gmmvi value,
    # 1 cm, needs far longer training; override target.kwargs.* for it).
    c.target.kwargs.likelihood_std = 0.05
    c.target.kwargs.min_radius = 6.0
    c.target.kwargs.max_radius = 8.0
    c.target.kwargs.min_angle = -0.5
    c.target.kwargs.max_angle = 0.5
    c.model.num_components = 12
    c.model.initial_components = 6
    c.model.init_std = 0.5
    c.model.component_hidden = (128, 128)
    c.model.gate_hidden = (64, 64)
    c.projection.eps_mean = 0.1
    c.projection.eps_cov = 0.01
    c.train.component_lr = 3e-3
    c.train.num_steps = 3000
    c.train.batch_contexts = 64
    return c
