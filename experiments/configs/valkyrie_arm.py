"""IK on Valkyrie's left forearm (4 DOF, `leftPalm` position contexts; no redundancy in
the elbow: one component suffices, extra ones are pruned).

Usage: `--config=experiments/configs/valkyrie_arm.py` (preset "quick", the default) or
`valkyrie_arm.py:full`; override fields with e.g. `--config.train.num_steps=500` or
`--config.target.kwargs.context=pose`.
"""

import ml_collections

from avips_jax import presets


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    return presets.ik_config("valkyrie_arm", preset)
