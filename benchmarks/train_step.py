"""Train-step time per iteration of aVIPS (jitted, after compilation), projection on and off.

Used by `benchmarks/projection.py` for its train-step table; runnable alone:
    python -m benchmarks.train_step
"""

import statistics
import time

import jax

from avips_jax import fit, runtime
from experiments.configs import planar as planar_configs
from experiments.configs import toy as toy_configs

CONFIGS = {
    "moving_gmm (d=2, K=8)": lambda: toy_configs.get_config("moving_gmm"),
    "planar (d=10, K=12)": lambda: planar_configs.get_config("10"),
}


def step_times(config, steps: int = 30) -> tuple[float, list[float]]:
    """(compile s, the s of each of `steps` jitted train steps) on fresh contexts each step."""
    target, _, _, state, step_fn = fit.build(config)
    batch = config.train.batch_contexts
    contexts = [target.sample_contexts(jax.random.PRNGKey(i), batch) for i in range(steps + 1)]
    start = time.perf_counter()
    state, metrics = step_fn(state, contexts[0])
    jax.block_until_ready(metrics["loss"])
    compile_s = time.perf_counter() - start
    times = []
    for c in contexts[1:]:
        start = time.perf_counter()
        state, metrics = step_fn(state, c)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - start)
    return compile_s, times


def time_train_step(config, steps: int = 30) -> tuple[float, float]:
    """(compile s, median s per step) of the jitted train step on fresh contexts each step."""
    compile_s, times = step_times(config, steps)
    return compile_s, statistics.median(times)


def table_lines(steps: int = 30) -> list[str]:
    """Markdown table of train-step times for each config, with and without the projection."""
    lines = [
        "| config | B | S | projection | compile (s) | ms / step | projection overhead |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, make in CONFIGS.items():
        per = {}
        for enabled in (True, False):
            config = make()
            config.projection.enabled = enabled
            compile_s, step_s = time_train_step(config, steps)
            per[enabled] = step_s
            overhead = f"{per[True] / step_s:.2f}x" if not enabled else ""
            lines.append(
                f"| {name} | {config.train.batch_contexts} | "
                f"{config.train.samples_per_component} | {'on' if enabled else 'off'} | "
                f"{compile_s:.1f} | {1e3 * step_s:.2f} | {overhead} |"
            )
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    print("\n".join(table_lines()))
