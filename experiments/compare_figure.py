"""One figure per robot: the solution sets of all models for the same test target, side by side
(a matplotlib `Figure` rendered by Agg; no pyplot, the global backend is left alone).

Each panel draws the robot stick figures (`target.skeleton_points`) of one model's samples for
one goal, coloured by mixture component where the model has components; all panels share their
axis limits, so that the spread of the solution sets compares at a glance.
"""

import dataclasses
import math
import os
import pathlib
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Line3DCollection


@dataclasses.dataclass(frozen=True)
class Panel:
    """One model's solutions for the goal.

    Attributes:
        title: the panel title (method name and a short summary).
        points: (n, P, 3) skeleton points of n solutions (metres).
        components: (n,) int component of each solution, or None.
    """

    title: str
    points: np.ndarray
    components: np.ndarray | None = None


def grid_shape(num_panels: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, cols) of a grid holding `num_panels` panels, at most `max_cols` wide.

    Raises:
        ValueError: num_panels < 1 or max_cols < 1.
    """
    if num_panels < 1 or max_cols < 1:
        raise ValueError(f"need num_panels >= 1 and max_cols >= 1, got {num_panels}, {max_cols}")
    cols = min(num_panels, max_cols)
    return math.ceil(num_panels / cols), cols


def shared_limits(points: Sequence[np.ndarray], goal: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (3,), half-width) of one cube holding every point and the goal."""
    flat = np.concatenate([np.asarray(p, float).reshape(-1, 3) for p in points] + [goal[None]])
    flat = flat[np.all(np.isfinite(flat), axis=1)]
    low, high = flat.min(axis=0), flat.max(axis=0)
    return 0.5 * (low + high), max(0.5 * float(np.max(high - low)), 1e-3)


def _draw_panel(ax, panel: Panel, edges: np.ndarray, goal: np.ndarray, max_drawn: int) -> None:
    points = np.asarray(panel.points, float)[:max_drawn]
    comps = panel.components
    comps = np.zeros(len(points), int) if comps is None else np.asarray(comps)[: len(points)]
    cmap = matplotlib.colormaps["tab10"]
    for k in np.unique(comps):
        segs = points[comps == k][:, edges].reshape(-1, 2, 3)
        color = cmap(int(k) % 10)
        ax.add_collection3d(Line3DCollection(segs, colors=[color], lw=1.0, alpha=0.5))
        ax.scatter(*points[comps == k][:, -1].T, s=6, color=color, depthshade=False)
    ax.scatter(*goal, marker="*", s=160, color="black", depthshade=False)
    ax.set_title(panel.title, fontsize=9)


def plot_solution_grid(
    path: str | os.PathLike,
    panels: Sequence[Panel],
    edges: Sequence[tuple[int, int]],
    goal: np.ndarray,
    *,
    title: str,
    max_drawn: int = 40,
) -> pathlib.Path:
    """A grid of 3-D panels, one per model, for one goal; returns the PNG's path.

    Args:
        path: output PNG (its folder is created).
        panels: one `Panel` per model.
        edges: (i, j) index pairs into the P skeleton points (`target.skeleton_edges`).
        goal: (3,) goal position (metres), drawn as a black star in every panel.
        title: the figure title.
        max_drawn: draw at most this many solutions per panel (the first ones).

    Raises:
        ValueError: no panels, or points not of shape (n, P, 3).
    """
    for panel in panels:
        if np.ndim(panel.points) != 3 or np.shape(panel.points)[-1] != 3:
            raise ValueError(f"{panel.title}: points must be (n, P, 3), got {panel.points.shape}")
    rows, cols = grid_shape(len(panels))
    goal = np.asarray(goal, float).reshape(3)
    edges = np.asarray(edges, int).reshape(-1, 2)
    centre, half = shared_limits([p.points[:max_drawn] for p in panels], goal)
    fig = Figure(figsize=(4.0 * cols, 4.0 * rows + 0.6))
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        _draw_panel(ax, panel, edges, goal, max_drawn)
        for axis, c in zip("xyz", centre, strict=True):
            getattr(ax, f"set_{axis}lim")(c - half, c + half)
        ax.set_box_aspect((1, 1, 1))
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=11)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
