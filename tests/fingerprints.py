r"""Fingerprints of short training runs, one per method: the same config and seed must give the
same trained model before and after a refactor.

    python -m tests.fingerprints --write     # record tests/fingerprints.json (before a change)
    python -m pytest tests/test_fingerprints.py -m slow    # compare (after it)

Each method trains a tiny Panda model (the `quick` preset shrunk: 3 slots of which 2 start active,
component adding and removal every 5 steps) for `NUM_STEPS` steps through `fit.fit`, then samples
`NUM_SAMPLES` joint vectors (rad) for `NUM_CONTEXTS` fixed contexts. The fingerprint is a few
statistics and strided entries of those samples, the log-density of the first samples where the
model has one, and the last logged loss: it depends on every parameter, but not on how the
training state is laid out, so it survives a restructuring of the state. Compiled with most XLA
optimisations off (as the small-model tests), which is part of the recorded setting.
"""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from avips_jax import fit, presets, runtime
from experiments.configs import panda

PATH = pathlib.Path(__file__).with_name("fingerprints.json")
NUM_STEPS = 20
NUM_CONTEXTS = 4
NUM_SAMPLES = 16
STRIDE = 7  # every 7th entry of the flattened samples
SEED = 3

_SMALL_GMM = (
    "model.num_components=3",
    "model.initial_components=2",
    "model.component_hidden=(16, 16)",
    "model.gate_hidden=(8,)",
    "train.batch_contexts=8",
    "train.samples_per_component=2",
    "train.log_every=5",
    "train.log_samples=4",
    "components.check_every=5",
    "components.add_every=5",
)
_SMALL_BASELINE = ("train.batch_contexts=8", "train.log_every=5", "train.log_samples=4")
_SMALL_FLOW = ("baseline.num_layers=2", "baseline.hidden=(16, 16)", "baseline.num_valid=256")
_SMALL_GAN = (
    "baseline.num_generators=2",
    "baseline.generator_hidden=(16, 16)",
    "baseline.discriminator_hidden=(8, 8)",
    "baseline.num_valid=512",
)
OVERRIDES = {
    "avips": _SMALL_GMM,
    "vanilla_gmm": _SMALL_GMM,
    "single_gaussian": _SMALL_BASELINE + ("model.component_hidden=(16, 16)",),
    "single_gaussian_noproj": _SMALL_BASELINE + ("model.component_hidden=(16, 16)",),
    "flow": _SMALL_BASELINE + _SMALL_FLOW,
    "flow_reverse_kl": _SMALL_BASELINE + _SMALL_FLOW,
    "gan": _SMALL_BASELINE + _SMALL_GAN,
    "gan_no_disc": _SMALL_BASELINE + _SMALL_GAN,
}


def method_config(method: str):
    """The tiny Panda config of `method` (ValueError from apply_method for an unknown one)."""
    config = presets.apply_method(panda.get_config("quick"), method, "quick")
    config.train.num_steps = NUM_STEPS
    config.seed = SEED
    return presets.apply_overrides(config, OVERRIDES[method])


def fingerprint(method: str) -> dict:
    """{"samples_sum", "samples_abs_sum", "samples_strided" (list), "log_prob" (list or None),
    "final_loss"} of `method` trained as `method_config` says."""
    result = fit.fit(method_config(method), progress=False)
    contexts = result.target.sample_contexts(jax.random.PRNGKey(123), NUM_CONTEXTS)
    x = np.asarray(result.model.sample(jax.random.PRNGKey(7), contexts, NUM_SAMPLES))
    log_prob = None
    if result.model.has_density:
        log_prob = np.asarray(result.model.log_prob(jnp.asarray(x[:, :2]), contexts))
        log_prob = [float(v) for v in log_prob.ravel()]
    return {
        "samples_sum": float(x.sum()),
        "samples_abs_sum": float(np.abs(x).sum()),
        "samples_strided": [float(v) for v in x.ravel()[::STRIDE]],
        "log_prob": log_prob,
        "final_loss": float(result.history[-1]["loss"]),
    }


def compute_all() -> dict[str, dict]:
    """The fingerprint of every method, with most XLA optimisations off."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        return {method: fingerprint(method) for method in OVERRIDES}
    finally:
        jax.config.update("jax_disable_most_optimizations", old)


def main(argv: list[str]) -> int:
    if argv[1:] != ["--write"]:
        print(__doc__)
        return 2
    PATH.write_text(json.dumps(compute_all(), indent=1) + "\n")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    sys.exit(main(sys.argv))
