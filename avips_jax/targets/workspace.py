"""Workspace bounds derived from a robot's kinematic tree (no hand-typed reach values).

Why the bound holds: a revolute body's origin lies on its own joint axis, so it does not move
when its joint turns, and its distance to the parent body's origin is the fixed length of the
joint offset's translation. Any point rigidly attached to a body is at a fixed distance from that
body's origin. By the triangle inequality, the distance between two links is at most the sum of
these segment lengths along the tree path between them (a prismatic joint adds its largest
|limit| to its segment). The bound is exact for a fully stretched chain whose segments can align
and an over-estimate otherwise: a context outside it is certainly unreachable, one inside may
still be unreachable (joint limits).
"""

import numpy as np

from avips_jax.kinematics import robot as robot_lib
from avips_jax.kinematics import tree as tree_lib


def _slide(tree: tree_lib.KinematicTree, body: int) -> float:
    """How far a body's origin can move off its offset point: 0 (revolute) or the largest
    |displacement| of a prismatic joint."""
    b = tree.bodies[body]
    if b.kind != "prismatic":
        return 0.0
    lo, hi = tree.lower[b.dof], tree.upper[b.dof]
    return abs(b.multiplier) * max(abs(lo), abs(hi)) + abs(b.bias)


def _ancestors(tree: tree_lib.KinematicTree, anchor: int) -> list[int]:
    """[anchor, parent, ..., ROOT] body indices."""
    path = [anchor]
    while path[-1] != tree_lib.ROOT:
        path.append(tree.bodies[path[-1]].parent)
    return path


def _walk_up(tree, point: np.ndarray, path: list[int]) -> tuple[float, np.ndarray]:
    """Moves a point fixed in frame path[0] up to the frame above path[-1].

    Returns:
        the summed segment lengths travelled, and the end point (the offset point of path[-1])
        in the frame of its parent.
    """
    total = 0.0
    for body in path:
        total += float(np.linalg.norm(point)) + _slide(tree, body)
        point = tree.bodies[body].offset[:3, 3]
    return total, point


def first_joint_sphere(robot: robot_lib.Robot, link: str) -> tuple[np.ndarray, float]:
    """A sphere that contains every reachable position of `link`.

    Centre: the origin of the first moving joint on the root -> link path (fixed in the root frame,
    on that joint's axis). Radius: the sum of the segment lengths from there to the link (module
    docstring).

    Returns:
        centre (3,) float64 in the root frame (m), radius (m).
    """
    tree = robot.tree
    anchor, const = tree.link_frames[link]
    if anchor == tree_lib.ROOT:  # a link that no joint moves
        return np.array(const[:3, 3], dtype=np.float64), 0.0
    path = _ancestors(tree, anchor)[:-1]  # moving bodies, the link's anchor first
    below, point = _walk_up(tree, const[:3, 3], path[:-1])  # point: in the top body's frame
    radius = below + float(np.linalg.norm(point)) + _slide(tree, path[-1])
    return np.array(tree.bodies[path[-1]].offset[:3, 3], dtype=np.float64), radius


def distance_bound(robot: robot_lib.Robot, link_a: str, link_b: str) -> float:
    """Upper bound (m) on the distance between two links over all joint values.

    Walks both links up to their lowest common anchor body; there both points are fixed in the
    same frame and their direct distance closes the path.
    """
    tree = robot.tree
    (anchor_a, const_a), (anchor_b, const_b) = tree.link_frames[link_a], tree.link_frames[link_b]
    path_a, path_b = _ancestors(tree, anchor_a), _ancestors(tree, anchor_b)
    common = next(a for a in path_a if a in path_b)
    len_a, point_a = _walk_up(tree, const_a[:3, 3], path_a[: path_a.index(common)])
    len_b, point_b = _walk_up(tree, const_b[:3, 3], path_b[: path_b.index(common)])
    return len_a + len_b + float(np.linalg.norm(point_a - point_b))
