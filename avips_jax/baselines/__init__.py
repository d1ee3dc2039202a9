"""Baselines trained and evaluated through the same entry points as aVIPS.

    config.method = "flow"                      # or flow_reverse_kl, gan, gan_no_disc
    config.baseline = baselines.default_baseline_config(config.method)
    trainer = baselines.make_trainer(config, target)      # base.Trainer(init, step, model)

The vanilla GMM and the single Gaussian are variants of the aVIPS network and loss
(`config.method = "vanilla_gmm"`, `model.num_components = 1`), not modules here.
"""

import importlib

import ml_collections

from avips_jax.baselines.base import BaselineState, SamplingModel, Trainer

__all__ = [
    "METHODS",
    "BaselineState",
    "SamplingModel",
    "Trainer",
    "default_baseline_config",
    "is_baseline",
    "make_trainer",
]

# method -> module under avips_jax.baselines (imported on first use).
METHODS = {
    "flow": "flow",
    "flow_reverse_kl": "flow",
    "gan": "gan",
    "gan_no_disc": "gan",
}


def is_baseline(method: str) -> bool:
    """Whether `method` is trained by a baseline trainer (not by the aVIPS train step)."""
    return method in METHODS


def _module(method: str):
    if method not in METHODS:
        raise ValueError(f"unknown baseline method {method!r}; choose one of {sorted(METHODS)}")
    return importlib.import_module(f"avips_jax.baselines.{METHODS[method]}")


def default_baseline_config(method: str) -> ml_collections.ConfigDict:
    """The `config.baseline` section of `method` with its defaults."""
    return _module(method).default_baseline_config()


def make_trainer(config: ml_collections.ConfigDict, target) -> Trainer:
    """The `base.Trainer` of `config.method` on `target`."""
    return _module(config.method).make_trainer(config, target)
