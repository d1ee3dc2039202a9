"""FK demo: end-effector poses and 3-D stick figures of every robot in a random configuration.

    python -m experiments.fk_demo --outdir=runs/fk_demo [--seed=0]

For each robot a configuration is drawn uniformly within its joint limits (seeded), the
end-effector pose is printed (position in m, orientation as a unit quaternion w, x, y, z with
w >= 0, in the robot's root frame), TALOS's whole-body centre of mass too, and one PNG per robot
plus an overview PNG are written to `--outdir`, with `configurations.json` (q per robot).
The pictures are 3-D stick figures (links as lines from each link to its parent link, actuated
joints as dots, tips as stars, the end-effector frame as red/green/blue axes), drawn with
matplotlib's object API (`Figure`, saved through the Agg canvas; no pyplot, no display).
"""

import dataclasses
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import TextIO

import jax
import matplotlib
import numpy as np
from absl import app, flags
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.spatial.transform import Rotation

from avips_jax import kinematics, runtime
from avips_jax.kinematics import robots as robots_lib

DEMO_ROBOTS = (
    "panda",
    "valkyrie",
    "valkyrie_arm_shoulder",
    "valkyrie_arm",
    "atlas",
    "atlas_arm",
    "talos",
    "planar_10",
)
COM_ROBOTS = ("talos",)  # robots whose URDF has inertials: their centre of mass is printed
DPI = 120
_AZIMUTHS = (-60.0, -45.0, -30.0, -120.0, -135.0, -150.0)  # degrees, candidate views
_TRUNK_COLOR = "#4d4d4d"
_HELD_COLOR = "#b0b0b0"
_BRANCH_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_FRAME_COLORS = ("#e41a1c", "#4daf4a", "#377eb8")  # x, y, z axes of the end-effector frame

_OUTDIR = flags.DEFINE_string("outdir", "runs/fk_demo", "Folder for the PNGs and the JSON.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random configurations.")
_ROBOTS = flags.DEFINE_list("robots", list(DEMO_ROBOTS), "Robots to show.")


@dataclasses.dataclass(frozen=True)
class RobotResult:
    """FK of one robot in one configuration.

    Attributes:
        name, dof, end_effector, root: as in `kinematics.Robot`.
        q: (dof,) float32 joint values (rad / m).
        pose: (4, 4) end-effector pose in the root frame, from `Robot.end_effector_pose`.
        links: chain links, root first; link_poses: (len(links), 4, 4) their poses.
        parents: link -> parent link (every link but the root).
        actuated: links whose parent joint is one of the robot's dofs.
        tips: tip links; com: (3,) centre of mass in the root frame (m), or None.
    """

    name: str
    dof: int
    end_effector: str
    root: str
    q: np.ndarray
    pose: np.ndarray
    links: tuple[str, ...]
    link_poses: np.ndarray
    parents: dict[str, str]
    actuated: frozenset[str]
    tips: tuple[str, ...]
    com: np.ndarray | None


def random_configuration(robot: kinematics.Robot, key: jax.Array) -> np.ndarray:
    """(dof,) float32 joint values drawn uniformly within [lower, upper]."""
    lower = np.asarray(robot.lower, np.float32)
    upper = np.asarray(robot.upper, np.float32)
    q = jax.random.uniform(key, (robot.dof,), np.float32, minval=lower, maxval=upper)
    return np.asarray(q)


def quaternion_wxyz(rotation: np.ndarray) -> np.ndarray:
    """(4,) unit quaternion (w, x, y, z) with w >= 0 of a (3, 3) rotation matrix."""
    quat = Rotation.from_matrix(np.asarray(rotation, np.float64)).as_quat(scalar_first=True)
    return quat if quat[0] >= 0 else -quat


def _urdf_model(robot: kinematics.Robot):
    """The parsed URDF behind a registered robot or a planar arm."""
    if robot.name.startswith("planar_"):
        n = int(robot.name.removeprefix("planar_"))
        return kinematics.parse_urdf(robots_lib.planar_urdf(n), source=robot.name)
    return kinematics.load_urdf(robot.source)


def link_parents(robot: kinematics.Robot) -> tuple[dict[str, str], frozenset[str]]:
    """Parent link of every chain link but the root, and the links moved by a dof."""
    parent_joint = _urdf_model(robot).parent_joint
    links = robot.chain_links[1:]
    parents = {link: parent_joint[link].parent for link in links}
    actuated = frozenset(link for link in links if parent_joint[link].name in robot.joint_names)
    return parents, actuated


def evaluate(robot: kinematics.Robot, q: np.ndarray) -> RobotResult:
    """FK of the end effector and of every chain link (and the centre of mass) at q (dof,)."""
    parents, actuated = link_parents(robot)
    com = np.asarray(robot.center_of_mass(q)) if robot.name in COM_ROBOTS else None
    return RobotResult(
        name=robot.name,
        dof=robot.dof,
        end_effector=robot.end_effector,
        root=robot.root_link,
        q=q,
        pose=np.asarray(robot.end_effector_pose(q)),
        links=robot.chain_links,
        link_poses=np.asarray(robot.link_poses(q, robot.chain_links)),
        parents=parents,
        actuated=actuated,
        tips=robot.tips,
        com=com,
    )


def format_table(results: Sequence[RobotResult]) -> str:
    """A plain-text table of the end-effector poses, plus centre-of-mass lines."""
    header = (
        f"{'robot':<22} {'dof':>3}  {'end effector':<24} "
        f"{'x (m)':>8} {'y (m)':>8} {'z (m)':>8}   quaternion (w, x, y, z), w >= 0"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        x, y, z = r.pose[:3, 3]
        w, qx, qy, qz = quaternion_wxyz(r.pose[:3, :3])
        lines.append(
            f"{r.name:<22} {r.dof:>3}  {r.end_effector:<24} {x:>8.4f} {y:>8.4f} {z:>8.4f}   "
            f"({w:.4f}, {qx:+.4f}, {qy:+.4f}, {qz:+.4f})"
        )
    lines.append("Positions and orientations are in each robot's root-link frame.")
    for r in results:
        if r.com is not None:
            cx, cy, cz = r.com
            lines.append(
                f"{r.name} whole-body centre of mass in {r.root}: ({cx:.4f}, {cy:.4f}, {cz:.4f}) m"
            )
    return "\n".join(lines)


def _branch_colors(result: RobotResult) -> dict[str, str]:
    """Link -> colour: one colour per tip branch, the shared trunk dark grey, held links light."""
    on_paths: dict[str, list[int]] = {}
    for i, tip in enumerate(result.tips):
        link = tip
        while link != result.root:
            on_paths.setdefault(link, []).append(i)
            link = result.parents[link]
    colors = {result.root: _TRUNK_COLOR}
    for link, tips in on_paths.items():
        shared = len(tips) > 1
        colors[link] = _TRUNK_COLOR if shared else _BRANCH_COLORS[tips[0] % len(_BRANCH_COLORS)]
    if len(result.tips) == 1:  # single chain: grey up to the first actuated joint
        for link in _held_prefix(result):
            colors[link] = _HELD_COLOR
    return colors


def _held_prefix(result: RobotResult) -> list[str]:
    """Links of a single chain between the root and the first link moved by a dof."""
    held = []
    for link in result.links[1:]:
        if link in result.actuated:
            break
        held.append(link)
    return held


def _limits(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis centres and half-ranges (3,) that keep equal scaling with a snug box."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    half = np.maximum((hi - lo) / 2, 0.3 * np.max(hi - lo)) * 1.08 + 0.02
    return (lo + hi) / 2, half


def _style_axes(ax, result: RobotResult, points: np.ndarray, compact: bool) -> None:
    center, half = _limits(points)
    for i, set_lim in enumerate((ax.set_xlim, ax.set_ylim, ax.set_zlim)):
        set_lim(center[i] - half[i], center[i] + half[i])
    ax.set_box_aspect(tuple(half), zoom=0.82 if compact else 0.86)  # equal metres per unit
    size = 7 if compact else 9
    for label, setter in zip("xyz", (ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), strict=True):
        setter(f"{label} (m)", fontsize=size, labelpad=-2 if compact else 6)
    ax.tick_params(labelsize=size - 2, pad=0)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_pane_color((0.975, 0.975, 0.975, 1.0))
    if np.ptp(points[:, 2]) < 0.1 * np.ptp(points[:, :2]):
        ax.set_zticks([points[0, 2]])  # a flat chain: one tick at its height
    ax.view_init(*view_angles(result))
    ax.set_title(f"{result.name}  ({result.dof} dof)", fontsize=11 if compact else 13, pad=0)


def view_angles(result: RobotResult) -> tuple[float, float]:
    """(elevation, azimuth) in degrees from which the joints overlap least.

    Among oblique front views (azimuths 30-60 degrees away from the x and y axes, so that no
    box face is seen edge-on) at a fixed elevation (20, or 60 for a flat chain), picks the one
    that maximises the sum over joint pairs of their projected distance, capped at 15% of the
    robot's size (so only near-overlaps count).
    """
    pos = np.unique(np.round(result.link_poses[:, :3, 3], 4), axis=0)
    diffs = (pos[:, None, :] - pos[None, :, :]).reshape(-1, 3)
    cap = 0.15 * max(np.ptp(pos, axis=0).max(), 1e-3)
    elev = 60.0 if np.ptp(pos[:, 2]) < 1e-9 else 20.0
    best = (-1.0, -60.0)
    for azim in _AZIMUTHS:
        e, a = np.radians(elev), np.radians(azim)
        view = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        projected = np.linalg.norm(diffs - np.outer(diffs @ view, view), axis=1)
        score = np.minimum(projected, cap).sum()
        if score > best[0] + 1e-9:
            best = (score, float(azim))
    return elev, best[1]


def _draw_frame(ax, pose: np.ndarray, length: float) -> None:
    """Short x (red), y (green), z (blue) axes of a pose."""
    origin = pose[:3, 3]
    for axis, color in zip(pose[:3, :3].T, _FRAME_COLORS, strict=True):
        end = origin + length * axis
        ax.plot(*np.stack([origin, end]).T, color=color, lw=1.6, solid_capstyle="round")


def _legend(ax, result: RobotResult) -> None:
    """Legend of the markers: root, joints, held joints, tips and the end-effector frame."""
    single = len(result.tips) == 1
    joint_color = _BRANCH_COLORS[0] if single else "0.35"
    handles = [
        Line2D([], [], marker="s", color="black", ls="", label=f"root ({result.root})"),
        Line2D([], [], marker="o", color=joint_color, mec="white", ls="", label="actuated joint"),
        Line2D([], [], marker="*", color="gold", mec="black", ms=11, ls="", label="tip"),
        Line2D([], [], color=_FRAME_COLORS[0], label="end-effector frame x, y, z"),
    ]
    if single:
        handles[2].set_label("end effector")
    if _HELD_COLOR in _branch_colors(result).values():
        handles.insert(2, Line2D([], [], color=_HELD_COLOR, lw=3, label="joints held at 0"))
    ax.legend(handles=handles, loc="upper left", fontsize=7.5, framealpha=0.85)


def plot_robot(ax, result: RobotResult, compact: bool = False) -> None:
    """Draws the chain(s) of `result` as a 3-D stick figure on a 3-D matplotlib axes."""
    index = {link: i for i, link in enumerate(result.links)}
    pos = result.link_poses[:, :3, 3]
    colors = _branch_colors(result)
    floor = pos[:, 2].min() - 0.05 * max(np.ptp(pos, axis=0).max(), 0.1)
    for link, parent in result.parents.items():
        seg = np.stack([pos[index[parent]], pos[index[link]]])
        # a segment is rigid with its parent link, so it takes the parent's colour
        ax.plot(*seg.T, color=colors[parent], lw=2.2 if compact else 3.0, solid_capstyle="round")
        ax.plot(seg[:, 0], seg[:, 1], [floor, floor], color="0.75", lw=1.0, alpha=0.6)
    moved = [index[link] for link in result.links if link in result.actuated]
    ax.scatter(
        *pos[moved].T,
        s=18 if compact else 30,
        c=[colors[result.links[i]] for i in moved],
        edgecolors="white",
        linewidths=0.6,
        depthshade=False,
        zorder=3,
    )
    ax.scatter(*pos[0], s=40, marker="s", c="black", depthshade=False)
    span = max(np.ptp(pos, axis=0).max(), 0.1)
    for tip in result.tips:
        p = pos[index[tip]]
        is_ee = tip == result.end_effector
        ax.scatter(
            *p,
            s=110 if is_ee else 70,
            marker="*",
            c="gold",
            edgecolors="black",
            linewidths=0.6,
            depthshade=False,
            zorder=4,
        )
        if not compact or len(result.tips) == 1:
            text = f"{tip} (EE)" if is_ee and len(result.tips) > 1 else tip
            ax.text(
                *(p + 0.04 * span),
                text,
                fontsize=6.5 if compact else 8,
                color="0.15",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7),
            )
    _draw_frame(ax, result.link_poses[index[result.end_effector]], 0.09 * span)
    if not compact:
        _legend(ax, result)
    _style_axes(ax, result, np.concatenate([pos, [[pos[0, 0], pos[0, 1], floor]]]), compact)


def save_robot_figure(result: RobotResult, path: pathlib.Path) -> None:
    """One PNG of one robot."""
    with matplotlib.rc_context({"grid.color": "0.88", "grid.linewidth": 0.6}):
        fig = Figure(figsize=(6.4, 6.0), dpi=DPI)
        ax = fig.add_subplot(projection="3d")
        plot_robot(ax, result)
        fig.subplots_adjust(left=0.0, right=0.95, bottom=0.02, top=0.95)
        fig.savefig(path, dpi=DPI)


def save_overview(results: Sequence[RobotResult], path: pathlib.Path) -> None:
    """One PNG with every robot as a subplot (4 per row)."""
    cols = min(4, len(results))
    rows = -(-len(results) // cols)
    with matplotlib.rc_context({"grid.color": "0.88", "grid.linewidth": 0.5}):
        fig = Figure(figsize=(4.2 * cols, 4.2 * rows), dpi=DPI)
        for i, result in enumerate(results):
            plot_robot(fig.add_subplot(rows, cols, i + 1, projection="3d"), result, compact=True)
        fig.subplots_adjust(left=0.0, right=0.98, bottom=0.02, top=0.95, wspace=0.05, hspace=0.1)
        fig.savefig(path, dpi=DPI)


def run_demo(
    outdir: str | pathlib.Path,
    seed: int = 0,
    names: Sequence[str] = DEMO_ROBOTS,
    stream: TextIO | None = None,
) -> list[RobotResult]:
    """Evaluates, prints and plots every robot in `names`; returns their results.

    Robot i gets q = `random_configuration(robot, jax.random.fold_in(jax.random.key(seed), i))`.
    Writes `<name>.png`, `overview.png` and `configurations.json` into `outdir`.
    """
    stream = sys.stdout if stream is None else stream
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    results = []
    for i, name in enumerate(names):
        robot = kinematics.load_robot(name)
        results.append(evaluate(robot, random_configuration(robot, jax.random.fold_in(key, i))))
    print(format_table(results), file=stream)
    configs = {
        r.name: {"joint_names": list(kinematics.load_robot(r.name).joint_names), "q": r.q.tolist()}
        for r in results
    }
    (outdir / "configurations.json").write_text(json.dumps({"seed": seed, **configs}, indent=1))
    paths = []
    for r in results:
        paths.append(outdir / f"{r.name}.png")
        save_robot_figure(r, paths[-1])
    paths.append(outdir / "overview.png")
    save_overview(results, paths[-1])
    print("\nWrote:", *[f"  {p}" for p in paths], sep="\n", file=stream)
    return results


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run_demo(_OUTDIR.value, _SEED.value, _ROBOTS.value)


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    app.run(main)
