"""IK on Franka Panda (7 DOF, `panda_hand` position contexts; joint 7 is free).

Usage: `--config=experiments/configs/panda.py` (preset "quick", the default) or
`panda.py:full`; override fields with e.g. `--config.train.num_steps=500` or
`--config.target.kwargs.context=pose`.
"""

import ml_collections

from avips_jax import presets


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    return presets.ik_config("panda", preset)
