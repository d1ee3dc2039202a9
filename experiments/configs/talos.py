"""TALOS whole-body IK (34-D: 28 joints, base xyz, base rpy; context = left-gripper xyz).

The target (docs/math.md §8.2): joint limits, centre of mass over the support, both feet flat at
their stances, left gripper at the context. Usage: `--config=experiments/configs/talos.py`
(preset "quick") or `talos.py:full`.
"""

import ml_collections

from avips_jax import presets


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    """`preset` is "<preset>[,<method>]" as for every robot config (presets.ik_config)."""
    c = presets.ik_config("talos", preset)
    c.target.name = "talos"
    # The target's other settings keep their defaults (docs/math.md §8.2); override any field of
    # avips_jax.targets.TalosWholeBody with --config.target.kwargs.<field> after adding it here.
    c.target.kwargs = ml_collections.ConfigDict()
    c.target.kwargs.gripper_std = 0.02  # metres: the left-gripper likelihood width
    c.model.init_std = 0.3
    preset = preset.partition(",")[0]
    if preset in presets.CPU_PRESETS:
        c.train.batch_contexts = 16
        c.train.samples_per_component = 4
    if preset == "precise":
        c.target.kwargs.gripper_std = 0.005
    if c.method == "gan":
        # Valid TALOS postures are optimised, not drawn (talos_data.valid_postures), so the
        # discriminator's pool is smaller than the IK targets' 100k.
        c.baseline.num_valid = 4096
    return c
