r"""Ablation of aVIPS's techniques on the conditional toy GMM and the planar arm.

Trains the full method and, in turn, the method with one technique switched off (the KL
projection, the adaptive trust regions, SIR, component adding, component removal), the two ways
of passing gradients through the covariance projection and target annealing, then reports
held-out ELBO and mode coverage. Writes a markdown table.

    python -m experiments.ablate_toy --out=results/ablation_toy.md
    python -m experiments.ablate_toy --steps_scale=0.05 --out=/tmp/a.md   # smoke run
    python -m experiments.ablate_toy --targets=planar --seeds=0,1,2 \
        --variants="full aVIPS,means-only projection" --out=/tmp/planar_seeds.md

With several seeds the table has one row per seed and a second table of the medians.
"""

import dataclasses
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from avips_jax import evaluation, fit, gmm, presets, runtime

from .configs import planar as planar_configs
from .configs import toy as toy_configs

_TARGETS = flags.DEFINE_list("targets", ["moving_gmm", "planar"], "Targets to ablate.")
_SCALE = flags.DEFINE_float("steps_scale", 1.0, "Multiplies each config's num_steps.")
_OUT = flags.DEFINE_string("out", "results/ablation_toy.md", "Markdown file to write.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Training seeds (one row per seed, then medians).")
_VARIANTS = flags.DEFINE_list("variants", None, "Variant names to run (default: all).")
_CONTEXTS = flags.DEFINE_integer("eval_contexts", 32, "Held-out contexts.")

# (name, overrides): each row switches one technique off (the last one on: target annealing as
# in the quick IK preset), or sets how the covariance projection
# passes gradients (the toy configs keep the thesis setting, exact gradients at alpha = 10; the
# planar config, like the IK configs, stops the gradient at alpha = 1: one of those two rows
# repeats "full aVIPS" on each target).
VARIANTS = (
    ("full aVIPS", {}),
    ("no projection", {"projection.enabled": False}),
    ("means-only projection", {"projection.covariance": False}),
    (
        "exact covariance gradient, alpha 10",
        {"projection.covariance_gradient": "implicit", "projection.alpha": 10.0},
    ),
    (
        "stopped covariance gradient, alpha 1",
        {"projection.covariance_gradient": "stop", "projection.alpha": 1.0},
    ),
    ("unpaired trust-region test", {"trust_region.paired": False}),
    ("no adaptive trust region", {"trust_region.adaptive": False}),
    ("no SIR", {"sir.enabled": False}),
    ("no adding", {"components.add": False}),
    ("no removal", {"components.remove": False}),
    ("with target annealing", {"train.anneal_fraction": 0.8, "train.anneal_start": 0.01}),
)
VARIANT_NAMES = tuple(name for name, _ in VARIANTS)


@dataclasses.dataclass
class Row:
    target: str
    variant: str
    seed: int
    elbo: float
    coverage: str
    extra: str
    active: int
    heavy: float
    seconds: float


def _config(target: str):
    if target == "planar":
        return planar_configs.get_config("10")
    return toy_configs.get_config(target)


def variant_config(target: str, overrides: dict, seed: int, steps_scale: float):
    """The target's config with a variant's overrides ("a.b" -> value; through
    `presets.apply_overrides`, so an unknown key or a value of another type is refused), the
    training seed and num_steps scaled by `steps_scale` (at least 10)."""
    config = _config(target)
    config.seed = seed
    config.train.num_steps = max(int(config.train.num_steps * steps_scale), 10)
    return presets.apply_overrides(config, [f"{key}={value}" for key, value in overrides.items()])


def _evaluate(res: fit.FitResult, contexts) -> tuple[float, str, str, float]:
    target, active = res.target, res.state.active
    params = res.module.apply(res.state.variables, contexts)
    key = jax.random.PRNGKey(1)
    elbo = float(np.mean(evaluation.elbo_per_context(params, active, target, contexts, key)))
    heavy = float(np.mean(evaluation.heavy_components(params, active)))
    if target.has_modes:
        dist = evaluation.mode_distances(
            params, active, target.modes(contexts), target.mode_stds(contexts)
        )
        coverage = f"{100 * np.mean(dist < 0.1):.1f}% (worst {np.max(dist):.2f} std)"
        return elbo, coverage, "", heavy
    clusters = evaluation.planar_solution_clusters(
        params, active, target.end_effector, contexts, tol=3 * target.likelihood_std
    )
    x, _ = gmm.sample(params, active, jax.random.PRNGKey(2), 500)
    err = jnp.linalg.norm(target.end_effector(x) - contexts[None], axis=-1)
    coverage = f"{np.mean(clusters):.2f} solution clusters / goal"
    extra = f"median end-effector error {1000 * float(jnp.median(err)):.0f} mm"
    return elbo, coverage, extra, heavy


def run(targets, steps_scale: float, seeds, n_contexts: int, variants=VARIANT_NAMES) -> list[Row]:
    unknown = sorted(set(variants) - set(VARIANT_NAMES))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANT_NAMES)}")
    rows = []
    for target_name in targets:
        for variant, overrides in VARIANTS:
            if variant not in variants:
                continue
            for seed in seeds:
                config = variant_config(target_name, overrides, seed, steps_scale)
                start = time.perf_counter()
                res = fit.fit(config, progress=False)
                seconds = time.perf_counter() - start
                # The held-out contexts are the same for every seed (evaluation seed 0).
                contexts = evaluation.sample_key_contexts(res.target, 0, n_contexts)
                elbo, coverage, extra, heavy = _evaluate(res, contexts)
                active = int(jnp.sum(res.state.active))
                row = Row(target_name, variant, seed, elbo, coverage, extra, active, heavy, seconds)
                rows.append(row)
                print(row, flush=True)
    return rows


def to_markdown(rows: list[Row], argv: list[str]) -> str:
    lines = [
        "# aVIPS ablation on toy targets",
        "",
        f"- Command: `python -m experiments.ablate_toy {' '.join(argv[1:])}`",
        f"- Machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
        f"devices {[d.platform for d in jax.devices()]}",
        "- ELBO: Monte-Carlo ELBO on held-out contexts, minus log Z(c) where it is known "
        "(moving_gmm is normalised, so the column is the gap -KL(q||p) <= 0).",
        "- Coverage (moving_gmm): share of (context, true mode) pairs with a component of weight "
        ">= 1% within 0.1 std of the mode. Planar: distinct solutions among the component means "
        "(end effector within 3 sigma of the goal, first joints >= 0.4 rad apart).",
        "",
        "| target | variant | seed | ELBO | coverage | other | active slots "
        "| comps >= 1% / context | train s |",
        "|---|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.target} | {r.variant} | {r.seed} | {r.elbo:.4g} | {r.coverage} | {r.extra} "
            f"| {r.active} | {r.heavy:.2f} | {r.seconds:.0f} |"
        )
    if len({r.seed for r in rows}) > 1:
        lines += ["", "Medians over the seeds:", "", "| target | variant | ELBO (per seed) |"]
        lines.append("|---|---|---|")
        groups: dict[tuple[str, str], list[Row]] = {}
        for r in rows:
            groups.setdefault((r.target, r.variant), []).append(r)
        for (target, variant), group in groups.items():
            per_seed = ", ".join(f"{r.elbo:.4g}" for r in group)
            median = float(np.median([r.elbo for r in group]))
            lines.append(f"| {target} | {variant} | {median:.4g} ({per_seed}) |")
    return "\n".join(lines) + "\n"


def main(argv):
    seeds = [int(s) for s in _SEEDS.value]
    variants = tuple(_VARIANTS.value) if _VARIANTS.value else VARIANT_NAMES
    rows = run(_TARGETS.value, _SCALE.value, seeds, _CONTEXTS.value, variants)
    text = to_markdown(rows, sys.argv)
    path = pathlib.Path(_OUT.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    app.run(main)
