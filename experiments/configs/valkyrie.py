"""IK on Valkyrie, torso + left arm (10 DOF, `leftPalm` position contexts).

Usage: `--config=experiments/configs/valkyrie.py` (preset "quick", the default) or
`valkyrie.py:full`; override fields with e.g. `--config.train.num_steps=500` or
`--config.target.kwargs.context=pose`.
"""

import ml_collections

from avips_jax import presets


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    return presets.ik_config("valkyrie", preset)
