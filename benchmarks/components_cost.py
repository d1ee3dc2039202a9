r"""Train-step time of the Panda quick preset against K_max: aVIPS and the vanilla GMM.

More components per context cost step time: every network head, projection and target
evaluation grows with K, and the mixture density of every sample under every component with K².
This benchmark times the jitted train step (after compilation, fresh contexts each step) at each
K_max for both methods in one run, so the ratios compare like with like on the same machine, and
then, at the first K_max, aVIPS with its parts switched off in turn (`BREAKDOWN`): what each part
of the method costs.

    python -m benchmarks.components_cost       # writes benchmarks/results/components_cost.md
    python -m benchmarks.components_cost --num_components=8,16 --steps=10 --out=/tmp/k.md
"""

import datetime
import pathlib
import statistics
import sys

from absl import app, flags

from avips_jax import presets, runtime
from benchmarks import train_step
from experiments import compare_report
from experiments.configs import panda

FLAGS = flags.FLAGS


# (row name, overrides of the aVIPS config): each switches one more part off than the row above.
BREAKDOWN = (
    ("aVIPS (preset)", {}),
    ("fixed bounds (no paired improvement test)", {"trust_region.adaptive": False}),
    ("... and the means projected only", {"projection.covariance": False}),
    ("... and no regression (alpha 0)", {"projection.alpha": 0.0}),
    ("no projection at all", {"projection.enabled": False}),
    ("... and no SIR reward estimate", {"sir.enabled": False}),
)


def panda_config(method: str, num_components: int):
    """The Panda quick config of `method` with K_max = K_init = `num_components`."""
    if num_components < 1:
        raise ValueError(f"num_components must be >= 1, got {num_components}")
    c = presets.apply_method(panda.get_config("quick"), method)
    c.model.num_components = num_components
    c.model.initial_components = num_components
    return c


def table_lines(ks: list[int], methods: list[str], steps: int) -> list[str]:
    """Markdown rows: method, K_max, compile s, best and median ms per step, and the ratios of the
    best times to the method's first K_max and to the vanilla GMM at the same K_max. On a shared
    machine the best step is the one least disturbed by other jobs."""
    lines = [
        "| method | K_max | compile (s) | best ms / step | median ms / step | vs. first K_max "
        "| vs. vanilla GMM |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    best: dict[tuple[str, int], float] = {}
    for k in ks:
        for method in methods:
            compile_s, times = train_step.step_times(panda_config(method, k), steps)
            best[method, k] = min(times)
            vs_first = best[method, k] / best[method, ks[0]]
            vanilla = best.get(("vanilla_gmm", k))
            vs_vanilla = (
                f"{best[method, k] / vanilla:.2f}x" if vanilla and method != "vanilla_gmm" else ""
            )
            lines.append(
                f"| {method} | {k} | {compile_s:.1f} | {1e3 * best[method, k]:.1f} "
                f"| {1e3 * statistics.median(times):.1f} | {vs_first:.2f}x | {vs_vanilla} |"
            )
            print(lines[-1], flush=True)
    return lines


def breakdown_lines(num_components: int, steps: int) -> list[str]:
    """Markdown rows: aVIPS with the `BREAKDOWN` overrides applied cumulatively (best ms per
    step, and the ms that the last switch saved)."""
    lines = [
        f"| aVIPS at K_max {num_components} | best ms / step | saved by this switch (ms) |",
        "|---|---:|---:|",
    ]
    config = panda_config("avips", num_components)
    previous = None
    for name, overrides in BREAKDOWN:
        presets.apply_overrides(config, [f"{key}={value}" for key, value in overrides.items()])
        best = min(train_step.step_times(config, steps)[1])
        saved = "" if previous is None else f"{1e3 * (previous - best):.1f}"
        lines.append(f"| {name} | {1e3 * best:.1f} | {saved} |")
        print(lines[-1], flush=True)
        previous = best
    return lines


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so that importing this module
    next to other absl programs, as the tests do, cannot clash over flag names)."""
    flags.DEFINE_list("num_components", ["8", "16", "32"], "K_max values (all slots active).")
    flags.DEFINE_list("methods", ["avips", "vanilla_gmm"], "Methods (avips_jax.presets.METHODS).")
    flags.DEFINE_integer("steps", 30, "Timed steps per row (the best and the median reported).")
    flags.DEFINE_bool("breakdown", True, "Also time aVIPS with parts switched off.")
    flags.DEFINE_string(
        "out", "benchmarks/results/components_cost.md", "Markdown file to write ('' for none)."
    )


def main(argv):
    del argv
    try:
        ks = [int(k) for k in FLAGS.num_components]
    except ValueError:
        given = FLAGS.num_components
        raise app.UsageError(f"--num_components must be integers, got {given}") from None
    if not ks or min(ks) < 1:
        raise app.UsageError(f"--num_components must be integers >= 1, got {ks}")
    methods = list(FLAGS.methods)
    if "vanilla_gmm" in methods:  # timed first at each K, so that aVIPS rows get their ratio
        methods = ["vanilla_gmm"] + [m for m in methods if m != "vanilla_gmm"]
    rows = table_lines(ks, methods, FLAGS.steps)
    if FLAGS.breakdown:
        rows += ["", *breakdown_lines(ks[0], FLAGS.steps)]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "# Train-step time against K_max (Panda quick preset)",
            "",
            f"Generated by `python -m benchmarks.components_cost {' '.join(sys.argv[1:])}` on "
            f"{now}.",
            "",
            f"- Hardware: {compare_report.hardware()}.",
            "- Batch 64 contexts x 4 samples per component; all K_max slots active; the best and "
            f"the median of {FLAGS.steps} jitted steps after the compiling one. The ratios use "
            "the best times: on a machine shared with other jobs the best step is the least "
            "disturbed one. Compare ratios within this file, not across files.",
            "",
            *rows,
            "",
        ]
    )
    print(text)
    if FLAGS.out:
        pathlib.Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(FLAGS.out).write_text(text)


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    define_flags()
    app.run(main)
