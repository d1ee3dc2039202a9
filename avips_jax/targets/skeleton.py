"""Stick-figure edges between chosen links of a robot, from its robot file's link tree."""

import functools
from collections.abc import Sequence

from avips_jax.kinematics import robot as robot_lib
from avips_jax.kinematics import robots


@functools.cache
def _parents(source: str) -> dict[str, str]:
    """link -> parent link of the robot file `source` (URDF or MJCF)."""
    model = robots.load_model(source)
    return {link: joint.parent for link, joint in model.parent_joint.items()}


@functools.cache
def _edges(robot: robot_lib.Robot, links: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    if robot.source == "<string>":  # no file to read the tree from: a serial chain in order
        return tuple((i, i + 1) for i in range(len(links) - 1))
    parents, index, edges = _parents(robot.source), {name: i for i, name in enumerate(links)}, []
    for i, link in enumerate(links):
        up = parents.get(link)
        while up is not None and up not in index:
            up = parents.get(up)
        if up is not None:
            edges.append((index[up], i))
    return tuple(edges)


def edges(robot: robot_lib.Robot, links: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """(parent index, child index) pairs joining each link to its nearest ancestor in `links`.

    Args:
        robot: the robot (its robot file gives the link tree; a robot built from a string is
            treated as a serial chain in the order of `links`).
        links: link names; indices refer to this order.
    """
    return _edges(robot, tuple(links))
