"""IK on Panda with full-pose contexts (position + unit quaternion w, x, y, z with w >= 0).

Usage: `--config=experiments/configs/panda_pose.py` (preset "quick") or `panda_pose.py:full`.
"""

import ml_collections

from experiments.configs import common


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    c = common.ik_config("panda", preset, context="pose")
    c.target.kwargs.rotation_std = 0.1  # radians
    return c
