"""PNG figures of an IK evaluation (matplotlib `Figure` objects rendered by Agg; no pyplot, so
nothing is shown on screen and the global backend is left alone).

    plots.plot_solutions_3d(path, points, edges, goal, components=ids)  # robot stick figures
    plots.plot_error_histogram(path, position_errors_mm)                # log-x histogram
    plots.plot_component_weights(path, weights)                         # weights over contexts
    plots.plot_training_curves(path, history)                           # history.jsonl records

Every function writes one PNG (parent directories created) and returns its path. Inputs are
numpy-convertible arrays; units are stated in the axis labels.
"""

import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

# matplotlib is imported inside the functions that draw: importing it takes about a second, and
# most processes that import this module (training, `read_history`, error paths) draw nothing.

DPI = 120


def _save(fig, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _component_colors(components: np.ndarray) -> tuple[np.ndarray, dict[int, tuple]]:
    """One colour per distinct component id (tab10/tab20), in order of first id."""
    import matplotlib

    ids = np.unique(components)
    cmap = matplotlib.colormaps["tab10" if len(ids) <= 10 else "tab20"]
    palette = {int(k): cmap(i % cmap.N) for i, k in enumerate(ids)}
    return ids, palette


def _set_equal_3d(ax, points: np.ndarray) -> None:
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2, 1e-3)
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))


def plot_solutions_3d(
    path: str | os.PathLike,
    points: np.ndarray,
    edges: Sequence[tuple[int, int]],
    goal: np.ndarray,
    components: np.ndarray | None = None,
    *,
    title: str = "IK solutions for one target",
    max_figures: int = 60,
) -> pathlib.Path:
    """Robot stick figures of several solutions for one goal, coloured by mixture component.

    Args:
        path: output PNG.
        points: (n, P, 3) world points of each solution's skeleton (metres), e.g.
            `target.skeleton_points(x)`.
        edges: (i, j) index pairs into P (`target.skeleton_edges`).
        goal: (3,) goal position (metres), drawn as a star.
        components: optional (n,) int component of each solution (one colour each).
        title: figure title.
        max_figures: draw at most this many solutions (the first ones).
    """
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    points = np.asarray(points, float)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (n, P, 3), got {points.shape}")
    total, points = len(points), points[:max_figures]
    comps = np.zeros(len(points), int) if components is None else np.asarray(components)
    comps = comps[: len(points)]
    ids, palette = _component_colors(comps)
    edges = np.asarray(edges, int).reshape(-1, 2)
    fig = Figure(figsize=(7, 6.5))
    ax = fig.add_subplot(projection="3d")
    for k in ids:
        segs = points[comps == k][:, edges]  # (m, E, 2, 3)
        label = "solutions" if components is None else f"component {k} ({len(segs)})"
        ax.add_collection3d(
            Line3DCollection(segs.reshape(-1, 2, 3), colors=[palette[int(k)]], lw=1.2, alpha=0.6)
        )
        tips = points[comps == k][:, -1]
        ax.scatter(*tips.T, s=10, color=palette[int(k)], depthshade=False)
        ax.plot([], [], color=palette[int(k)], lw=2, label=label)  # legend proxy
    goal = np.asarray(goal, float).reshape(3)
    ax.scatter(*goal, marker="*", s=250, color="black", label="goal", depthshade=False)
    ax.scatter(*points[:, 0].T, s=8, color="grey")  # roots
    _set_equal_3d(ax, np.concatenate([points.reshape(-1, 3), goal[None]]))
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    shown = f"first {len(points)} of {total}" if total > len(points) else f"{total}"
    ax.set_title(f"{title}\n{shown} solutions")
    ax.legend(loc="upper left", fontsize=8, ncol=1 + len(ids) // 12)
    return _save(fig, path)


def plot_error_histogram(
    path: str | os.PathLike,
    errors_mm: np.ndarray,
    *,
    thresholds_mm: Sequence[float] = (1.0, 10.0),
    title: str = "Position error of the samples",
    label: str | None = None,
) -> pathlib.Path:
    """Histogram of position errors on a log-x axis with vertical lines at the thresholds.

    Args:
        errors_mm: (...) errors in millimetres (non-finite values are left out and counted in
            the title).
    """
    from matplotlib.figure import Figure

    errors = np.asarray(errors_mm, float).ravel()
    finite = errors[np.isfinite(errors)]
    positive = np.clip(finite, 1e-4, None)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    if positive.size:
        lo, hi = np.log10(positive.min()), np.log10(max(positive.max(), positive.min() * 10))
        ax.hist(positive, bins=np.logspace(lo, hi, 60), color="tab:blue", alpha=0.8, label=label)
        ax.axvline(
            np.median(positive),
            color="tab:blue",
            ls="--",
            lw=1,
            label=f"median {np.median(positive):.3g} mm",
        )
    for t in thresholds_mm:
        ax.axvline(t, color="black", ls=":", lw=1.2, label=f"{t:g} mm")
    ax.set_xscale("log")
    ax.set_xlabel("position error (mm, log scale)")
    ax.set_ylabel("number of samples")
    bad = errors.size - finite.size
    ax.set_title(title + (f" ({bad} non-finite left out)" if bad else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_component_weights(
    path: str | os.PathLike,
    weights: np.ndarray,
    *,
    threshold: float = 0.01,
    title: str = "Mixture weights across test contexts",
) -> pathlib.Path:
    """Stacked component weights per context (contexts grouped by their heaviest slot, then
    sorted by its weight) and the distribution of the number of components above `threshold`
    per context.

    Args:
        weights: (T, K) weights per context (rows sum to 1; inactive slots 0).
    """
    import matplotlib.ticker
    from matplotlib.figure import Figure

    weights = np.asarray(weights, float)
    if weights.ndim != 2:
        raise ValueError(f"weights must have shape (T, K), got {weights.shape}")
    used = np.flatnonzero(weights.max(axis=0) > 0)
    w = weights[:, used]
    order = np.lexsort((-w.max(axis=1), w.argmax(axis=1)))
    _, palette = _component_colors(used)
    fig = Figure(figsize=(12, 4.5))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(len(w))
    bottom = np.zeros(len(w))
    for j, k in enumerate(used):
        ax.bar(x, w[order, j], bottom=bottom, width=1.0, color=palette[int(k)], label=f"slot {k}")
        bottom += w[order, j]
    ax.set_xlim(-0.5, len(w) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("test context (grouped by heaviest component, sorted by its weight)")
    ax.set_ylabel("component weight")
    ax.set_title(title)
    ax.legend(  # below the axis label, so that it hides no bar
        fontsize=7, ncol=min(len(used), 8), loc="upper center", bbox_to_anchor=(0.5, -0.14)
    )
    counts = np.sum(weights > threshold, axis=1)
    values = np.arange(counts.min(), counts.max() + 1)
    ax2.bar(values, [np.sum(counts == v) for v in values], color="tab:gray")
    ax2.set_xlabel(f"components with weight > {threshold:g}")
    ax2.set_ylabel("number of contexts")
    ax2.set_title("Active components per context")
    ax2.set_xticks(values)
    ax2.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return _save(fig, path)


def read_history(path: str | os.PathLike) -> list[dict]:
    """Records of a `history.jsonl` file (one JSON object per line; blank lines skipped).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the line that is not a JSON object.
    """
    path = pathlib.Path(path)
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{i} is not valid JSON: {err}") from err
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i} is not a JSON object")
        records.append(rec)
    return records


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of records that have `key`; list values become (n, k) rows."""
    rows = [(r["step"], r[key]) for r in history if key in r and "step" in r]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps = np.asarray([s for s, _ in rows], float)
    values = [np.asarray(v, float) for _, v in rows]
    if len({v.shape for v in values}) != 1:  # mixed scalars / lists: one mean per record
        values = [np.mean(v) for v in values]
    return steps, np.stack(values)


def _plot_series(ax, steps, values, label, color) -> None:
    if values.ndim == 1:
        ax.plot(steps, values, color=color, label=label)
        return
    values = np.where(values > 0, values, np.nan)  # per-slot lists: inactive slots hold 0
    ax.plot(steps, np.nanmedian(values, axis=1), color=color, label=f"{label} (median)")
    ax.fill_between(
        steps,
        np.nanmin(values, axis=1),
        np.nanmax(values, axis=1),
        color=color,
        alpha=0.2,
        label=f"{label} (min-max)",
    )


# (title, y label, [keys]; a key ending in "*" means every key with that prefix)
_PANELS = (
    ("ELBO", "ELBO (nats)", ["elbo"]),
    ("Position error", "position error (mm)", ["position_error*"]),
    ("Components", "count", ["num_active", "active_per_context"]),
    ("Trust-region bounds", "KL bound (nats)", ["eps_mean*", "eps_cov*"]),
)


def _panel_keys(history: list[dict], patterns: list[str]) -> list[tuple[str, str | None]]:
    """(key, band base or None) to draw: "<b>_mean" with "<b>_min" and "<b>_max" logged
    becomes one line with a min-max band (the _min/_max keys are not drawn alone)."""
    present = sorted({k for r in history for k in r})
    keys = []
    for p in patterns:
        keys += [k for k in present if (k.startswith(p[:-1]) if p.endswith("*") else k == p)]
    bands = {k[: -len("_mean")] for k in keys if k.endswith("_mean")}
    bands = {b for b in bands if f"{b}_min" in present and f"{b}_max" in present}
    skip = {f"{b}_{s}" for b in bands for s in ("min", "max")}
    return [
        (k, k[: -len("_mean")] if k[: -len("_mean")] in bands else None)
        for k in keys
        if k not in skip
    ]


def plot_training_curves(
    path: str | os.PathLike, history: list[dict], *, title: str = "Training"
) -> pathlib.Path:
    """2x2 panels against the train step: ELBO, position error, active components, trust-region
    bounds (per-slot lists drawn as median and min-max band). Panels without data say so.

    Args:
        history: records with a "step" key (as in `<workdir>/history.jsonl`).
    """
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2, sharex=True)
    colors = matplotlib.colormaps["tab10"]
    for ax, (name, ylabel, patterns) in zip(axes.ravel(), _PANELS, strict=True):
        drawn = 0
        for i, (key, band) in enumerate(_panel_keys(history, patterns)):
            steps, values = _series(history, key)
            if not steps.size:
                continue
            if band is not None and values.ndim == 1:
                lo, hi = _series(history, f"{band}_min")[1], _series(history, f"{band}_max")[1]
                if lo.shape == hi.shape == values.shape:
                    ax.fill_between(
                        steps, lo, hi, color=colors(i), alpha=0.2, label=f"{band} (min-max)"
                    )
            _plot_series(ax, steps, values, key, colors(i))
            drawn += 1
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        if name in ("Position error", "Trust-region bounds") and drawn:
            ax.set_yscale("log")  # both span orders of magnitude over a run
        ax.set_title(name)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("train step")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
