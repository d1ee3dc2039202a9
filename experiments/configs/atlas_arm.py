"""IK on Atlas 2013, left arm (6 DOF, `l_hand` position contexts).

Usage: `--config=experiments/configs/atlas_arm.py` (preset "quick", the default) or
`atlas_arm.py:full`; override fields with e.g. `--config.train.num_steps=500` or
`--config.target.kwargs.context=pose`.
"""

import ml_collections

from avips_jax import presets


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    return presets.ik_config("atlas_arm", preset)
