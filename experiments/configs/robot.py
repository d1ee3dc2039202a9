"""IK for a robot file of your own (URDF), with the chain chosen by flags.

Usage: `--config=experiments/configs/robot.py:<file>[,<preset>[,<method>]]` with preset quick
(default), full or precise and a method of `presets.METHODS` (default avips), then the chain:

    python -m experiments.train --workdir=runs/ur5 \\
        --config=experiments/configs/robot.py:/path/to/ur5_robot.urdf,quick \\
        --config.target.kwargs.tip=tool0

    --config.target.kwargs.tip=<link>          the end effector (needed where the file has
                                               several leaf links; the error lists them)
    --config.target.kwargs.root=<link>         the base the contexts are expressed in
                                               (default: the file's root link)
    --config.target.kwargs.joint_names=j1,j2   the joints to solve for (default: every movable
                                               joint on the root -> tip path)
    --config.target.kwargs.locked=j3=0.02,...  joints held at a value (rad or m)
    --config.target.kwargs.context=pose        position + orientation contexts (default: position)

The file path is stored absolute. The contexts (and the workspace sphere that `check_reachable`
uses) come from FK of joints uniform in their limits, as for the named robots
(`avips_jax.targets.ik`). A chain that cannot move its tip, or a file with several leaf links and
no tip, is refused before anything is written (`avips_jax.targets.ik_robot`).
"""

import os

import ml_collections

from avips_jax import presets


def get_config(spec: str = "") -> ml_collections.ConfigDict:
    """The config of "<file>[,<preset>[,<method>]]" (see the module docstring)."""
    path, _, preset = str(spec).partition(",")
    if not path.strip():
        raise ValueError(
            "robot.py needs the robot file: --config=experiments/configs/robot.py:"
            "<path/to/robot.urdf>[,<preset>[,<method>]]"
        )
    c = presets.ik_config(os.path.abspath(path.strip()), preset.strip() or "quick")
    c.target.kwargs.root = ""
    c.target.kwargs.tip = ""
    c.target.kwargs.joint_names = ""
    c.target.kwargs.locked = ""
    c.target.kwargs.rotation_std = 0.1  # radians, for context=pose
    return c
