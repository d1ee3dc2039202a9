"""Baselines that learn from valid pairs or from the target alone, each an `avips_jax.trainer.
Trainer` (`avips_jax.methods` registers them beside aVIPS and the vanilla GMM).

    config.method = "flow"                      # or flow_reverse_kl, gan, gan_no_disc
    config.baseline = baselines.default_baseline_config(config.method)
    trainer = methods.make_trainer(config, target)

The vanilla GMM (`avips_jax.vanilla_gmm`) and the single Gaussian are aVIPS's network with
another loss or one component, not modules here.
"""

import importlib

import ml_collections

from avips_jax import settings
from avips_jax.baselines.base import BaselineState

__all__ = ["MODULES", "BaselineState", "default_baseline_config", "make_trainer"]

# method -> module under avips_jax.baselines (imported on first use).
MODULES = {
    "flow": "flow",
    "flow_reverse_kl": "flow",
    "gan": "gan",
    "gan_no_disc": "gan",
}


def _module(method: str):
    if method not in MODULES:
        raise ValueError(f"unknown baseline method {method!r}; choose one of {sorted(MODULES)}")
    return importlib.import_module(f"avips_jax.baselines.{MODULES[method]}")


def default_baseline_config(method: str) -> ml_collections.ConfigDict:
    """The `config.baseline` section of `method` with its defaults."""
    return _module(method).default_baseline_config()


def make_trainer(config: "ml_collections.ConfigDict | settings.Settings", target):
    """The `Trainer` of the baseline `config.method` on `target` (a config or its settings)."""
    resolved = settings.as_settings(config)
    return _module(resolved.method).make_trainer(resolved, target)
