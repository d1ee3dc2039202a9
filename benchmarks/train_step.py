"""Train-step time per iteration of aVIPS (jitted, after compilation), projection on and off,
and the time per step of the whole training loop.

Used by `benchmarks/projection.py` for its train-step table; runnable alone:
    python -m benchmarks.train_step           # the jitted step, each call waited for
    python -m benchmarks.train_step --loop    # the host loop of fit.fit on Panda quick (aVIPS)

The loop figure is what a training run sees: context sampling, the step, the host-side checks,
component adaptation and logging, with JAX's asynchronous dispatch free to overlap them.
"""

import copy
import statistics
import sys
import time

import jax

from avips_jax import fit, runtime
from experiments.configs import panda as panda_configs
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


def loop_step_ms(config, steps: int = 600, log_every: int = 100) -> list[float]:
    """The mean ms per step of `fit.fit`'s loop over each log interval after the first (which
    holds the compilation): `steps // log_every - 1` figures."""
    config = copy.deepcopy(config)
    config.train.num_steps, config.train.log_every = steps, log_every
    history = fit.fit(config, progress=False).history
    return [h["step_time_ms"] for h in history[1:]]


def loop_lines(steps: int = 600) -> list[str]:
    """One markdown line: the loop's ms per step on Panda quick (aVIPS), median and intervals."""
    laps = loop_step_ms(panda_configs.get_config("quick"), steps)
    each = ", ".join(f"{ms:.2f}" for ms in laps)
    return [
        f"loop ms / step (Panda quick, aVIPS, {steps} steps): {statistics.median(laps):.2f} "
        f"(per 100-step interval: {each})"
    ]


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    if sys.argv[1:] not in ([], ["--loop"]):
        sys.exit(f"usage: python -m benchmarks.train_step [--loop]; got {sys.argv[1:]}")
    print("\n".join(loop_lines() if sys.argv[1:] == ["--loop"] else table_lines()))
