"""Accelerator benchmark: train step, sampling and FK on all local devices, data-parallel.

For each robot (`--robots`, default Panda and TALOS, at the `--preset` sizes, default `full`) and
each device count n = 1, 2, 4, ... up to `jax.device_count()` (the first n devices, as a 1-D
`jax.sharding.Mesh` with axis "data"), it measures
  1. the jitted aVIPS train step (`fit.build(config)`): median time of up to `--steps` steps
     after the compiling one, fresh contexts each step, contexts sharded along "data", the
     train state replicated; throughput = contexts x components x samples per component / s;
  2. sampling latency of the model (`model.AmortizedGMM.sample`, one jitted call: network and
     mixture draw): 1 target x 2000 samples (samples sharded) and 1000 targets x 250 samples
     (targets sharded);
  3. FK throughput: configurations / s through `robot.link_poses(q, [robot.end_effector])`,
     configurations sharded.
Batch sizes that do not divide by n are rounded up to the next multiple (the tables say so).
The global batch is the same for every n (strong scaling); speed-ups are ratios to the 1-device
row of the same run. Nothing here is CUDA- or TPU-specific: jax picks the platform. The
multi-process case (the same step on 1 process x 2 devices against 2 processes x 1 device,
`jax.distributed`) is `benchmarks/multiprocess.py`, which reuses this module's setup and timing.

Usage (from the repository root):
    python -m benchmarks.accelerator                          # GPU / TPU: all local devices
    python -m benchmarks.accelerator --host_devices=2         # CPU, 2 forced host devices
    python -m benchmarks.accelerator --tiny --robots=panda --output=/tmp/accelerator.md
"""

import os

_XLA_FLAGS_GIVEN = os.environ.get("XLA_FLAGS")  # as the user ran it: recorded in the command

import dataclasses  # noqa: E402
import datetime  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from avips_jax import fit, hardware, loop, runtime  # noqa: E402
from avips_jax import model as model_lib  # noqa: E402

AXIS = "data"
DEFAULT_OUTPUT = "benchmarks/results/accelerator.md"
MEASUREMENTS = ("train", "sample", "fk")
_HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_MIN_CALLS = 3  # timed calls per row even when the time budget is spent

# Sizes per mode: sampling (1 target x single_samples; batch_targets x samples_per_target), FK
# batch, and timed calls (train steps; sampling / FK calls).
FULL_SIZES = dict(
    single_samples=2000,
    batch_targets=1000,
    samples_per_target=250,
    fk_batch=1_000_000,
    steps=20,
    repeats=20,
)
TINY_SIZES = dict(
    single_samples=64, batch_targets=16, samples_per_target=8, fk_batch=1024, steps=2, repeats=3
)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of a jitted call.

    Attributes:
        compile_s: the first call (tracing, compilation and one run), s.
        median_s: median of the timed calls after it, s.
        calls: number of timed calls.
    """

    compile_s: float
    median_s: float
    calls: int


@dataclasses.dataclass(frozen=True)
class Row:
    """One measurement of one robot on the first `devices` devices.

    Attributes:
        robot: robot (config) name.
        devices: number of devices in the mesh.
        size: what one call processes, as text (rounding noted).
        items: samples / configurations one call processes (the throughput's numerator).
        timing: the call's `Timing`.
    """

    robot: str
    devices: int
    size: str
    items: int
    timing: Timing

    @property
    def throughput(self) -> float:
        """items / median seconds per call."""
        return self.items / self.timing.median_s


# ---------------------------------------------------------------------------------------------
# Pure helpers.


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n (a batch every device gets a share of).

    Raises:
        ValueError: n or multiple below 1.
    """
    if n < 1 or multiple < 1:
        raise ValueError(f"round_up needs n >= 1 and multiple >= 1, got n={n}, multiple={multiple}")
    return -(-n // multiple) * multiple


def sized(n: int, devices: int) -> tuple[int, str]:
    """(n rounded up to a multiple of `devices`, its label noting any rounding)."""
    m = round_up(n, devices)
    return m, str(m) if m == n else f"{m} ({n} rounded up to a multiple of {devices})"


def device_counts(total: int) -> tuple[int, ...]:
    """1, 2, 4, ... below `total`, then `total` itself: the rows of the scaling tables.

    Raises:
        ValueError: total below 1.
    """
    if total < 1:
        raise ValueError(f"device count must be >= 1, got {total}")
    counts = [1 << i for i in range(total.bit_length()) if 1 << i < total]
    return (*counts, total)


def with_host_devices(xla_flags: str | None, n: int) -> str:
    """`xla_flags` with `--xla_force_host_platform_device_count=n` appended (an earlier value of
    that flag is dropped; every other flag is kept).

    Raises:
        ValueError: n below 1.
    """
    if n < 1:
        raise ValueError(f"--host_devices must be >= 1, got {n}")
    kept = [f for f in (xla_flags or "").split() if f.split("=")[0] != _HOST_DEVICE_FLAG]
    return " ".join([*kept, f"{_HOST_DEVICE_FLAG}={n}"])


def speedup(row: Row, rows: Sequence[Row]) -> float | None:
    """row's throughput over that of the 1-device row of the same robot (None without one)."""
    base = [r for r in rows if r.robot == row.robot and r.devices == 1]
    return row.throughput / base[0].throughput if base else None


def command_line(
    argv: Sequence[str], xla_flags: str | None, module: str = "benchmarks.accelerator"
) -> str:
    """The command as a user types it (`XLA_FLAGS=... python -m <module> ...`)."""
    prefix = f"XLA_FLAGS={shlex.quote(xla_flags)} " if xla_flags else ""
    return f"{prefix}python -m {module} {shlex.join(argv)}".strip()


# ---------------------------------------------------------------------------------------------
# Devices, configs, timing.


def set_host_devices(n: int) -> None:
    """Asks XLA:CPU for n host devices; must run before jax initialises its backends.

    Raises:
        RuntimeError: jax's backends are already initialised (the flag could not take effect).
    """
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise RuntimeError("--host_devices must be applied before jax initialises its backends")
    os.environ["XLA_FLAGS"] = with_host_devices(os.environ.get("XLA_FLAGS"), n)


def make_mesh(n: int) -> Mesh:
    """A 1-D mesh over the first n local devices, axis `AXIS`."""
    devices = jax.local_devices()
    if not 1 <= n <= len(devices):
        raise ValueError(f"mesh of {n} devices asked for; {len(devices)} local devices")
    return Mesh(np.array(devices[:n]), (AXIS,))


def load_config(robot: str, preset: str, tiny: bool) -> ml_collections.ConfigDict:
    """`experiments/configs/<robot>.py:<preset>`; `tiny` shrinks network and batch.

    Raises:
        ValueError: no config file for `robot`.
    """
    try:
        module = importlib.import_module(f"experiments.configs.{robot}")
    except ModuleNotFoundError as err:
        raise ValueError(f"no config experiments/configs/{robot}.py for robot {robot!r}") from err
    config = module.get_config(preset)
    if tiny:
        config.model.num_components = config.model.initial_components = 2
        config.model.component_hidden = config.model.gate_hidden = (16,)
        config.train.batch_contexts = 8
        config.train.samples_per_component = 2
    return config


def check_split(x: jax.Array, devices: int) -> None:
    """Raises RuntimeError unless x is split over `devices` devices (not replicated): the call
    that made it ran data-parallel."""
    shard_shape = x.sharding.shard_shape(x.shape)
    if len(x.sharding.device_set) != devices or (devices > 1 and shard_shape == x.shape):
        raise RuntimeError(
            f"expected an output split over {devices} devices, got shards {shard_shape} of "
            f"{x.shape} on {len(x.sharding.device_set)} device(s)"
        )


def time_calls(
    call: Callable[[int], Any],
    max_calls: int,
    budget_s: float,
    check: Callable[[Any], None] | None = None,
) -> Timing:
    """Times `call(0)` (compiling; its output goes to `check`) and then `call(1)`, `call(2)`,
    ...: up to `max_calls` calls, fewer once `budget_s` seconds of timed calls are spent (but at
    least `_MIN_CALLS`). Each call's outputs are waited for with `block_until_ready`."""
    start = time.perf_counter()
    out = jax.block_until_ready(call(0))
    compile_s = time.perf_counter() - start
    if check is not None:
        check(out)
    times: list[float] = []
    while len(times) < max_calls and (len(times) < _MIN_CALLS or sum(times) < budget_s):
        start = time.perf_counter()
        jax.block_until_ready(call(len(times) + 1))
        times.append(time.perf_counter() - start)
    return Timing(compile_s, statistics.median(times), len(times))


# ---------------------------------------------------------------------------------------------
# The three measurements (one row each).


@dataclasses.dataclass(frozen=True)
class Setup:
    """What one robot's rows share: its config and `fit.build` results, built once."""

    name: str
    config: ml_collections.ConfigDict
    target: Any
    module: Any
    state: Any
    step_fn: Callable


def build_setup(name: str, config: ml_collections.ConfigDict) -> Setup:
    """Target, network, initial train state and jitted step of `config`."""
    target, module, _, state, step_fn = fit.build(config)
    return Setup(name, config, target, module, state, step_fn)


def bench_train(setup: Setup, mesh: Mesh, steps: int, budget_s: float) -> Row:
    """Train-step row: fresh contexts each step, sharded; state replicated."""
    t, n = setup.config.train, mesh.size
    batch, label = sized(t.batch_contexts, n)
    sample = jax.jit(setup.target.sample_contexts, static_argnums=1)
    contexts = [
        loop.shard_contexts(mesh, sample(jax.random.PRNGKey(1000 + i), batch))
        for i in range(steps + 1)
    ]
    # A copy: the step donates its input state, and setup.state is needed again (sampling rows).
    state = loop.replicate(mesh, jax.tree.map(jnp.copy, setup.state))

    def call(i):
        nonlocal state
        state, metrics = setup.step_fn(state, contexts[i])
        return state, metrics

    timing = time_calls(call, steps, budget_s, lambda out: check_split(contexts[0], n))
    skipped = int(state.num_skipped)
    if skipped:
        logging.warning("%s: %d of the train steps were skipped (non-finite)", setup.name, skipped)
    k, s = setup.config.model.num_components, t.samples_per_component
    size = f"B={label}, K={k}, S={s}, d={setup.target.dim}"
    return Row(setup.name, n, size, batch * k * s, timing)


def _model(setup: Setup, mesh: Mesh) -> model_lib.AmortizedGMM:
    model = model_lib.AmortizedGMM.from_train_state(
        setup.state, setup.module, setup.target.context_dim
    )
    return loop.replicate(mesh, model)


def bench_sample(
    setup: Setup, mesh: Mesh, targets: int, samples: int, repeats: int, budget_s: float
) -> Row:
    """Sampling row: `targets` x `samples` in one jitted call. With one target the samples are
    sharded, else the targets."""
    n = mesh.size
    if targets == 1:  # samples split over the devices, the target replicated
        samples, label = sized(samples, n)
        size, spec, place = f"1 x {label}", PartitionSpec(None, AXIS), loop.replicate
    else:
        targets, label = sized(targets, n)
        size, spec, place = f"{label} x {samples}", PartitionSpec(AXIS), loop.shard_contexts
    contexts = place(mesh, setup.target.sample_contexts(jax.random.PRNGKey(7), targets))
    model = _model(setup, mesh)
    draw = jax.jit(
        lambda m, key, c: m.sample(key, c, samples), out_shardings=NamedSharding(mesh, spec)
    )
    keys = jax.random.split(jax.random.PRNGKey(11), repeats + 1)
    timing = time_calls(
        lambda i: draw(model, keys[i], contexts), repeats, budget_s, lambda x: check_split(x, n)
    )
    return Row(setup.name, n, size, targets * samples, timing)


def random_configurations(robot: Any, n: int, seed: int = 0) -> np.ndarray:
    """n joint vectors uniform within the limits (continuous joints in [-pi, pi]): (n, dof)."""
    lower = np.where(np.isfinite(robot.lower), robot.lower, -np.pi)
    upper = np.where(np.isfinite(robot.upper), robot.upper, np.pi)
    rng = np.random.default_rng(seed)
    return rng.uniform(lower, upper, size=(n, robot.dof)).astype(np.float32)


def bench_fk(setup: Setup, mesh: Mesh, batch: int, repeats: int, budget_s: float) -> Row:
    """FK row: end-effector poses of `batch` configurations, sharded."""
    robot, n = setup.target.robot, mesh.size
    batch, label = sized(batch, n)
    q = loop.shard_contexts(mesh, random_configurations(robot, batch))
    fk = jax.jit(lambda q: robot.link_poses(q, (robot.end_effector,)))
    timing = time_calls(lambda i: fk(q), repeats, budget_s, lambda x: check_split(x, n))
    return Row(setup.name, n, f"{label} (dof {robot.dof})", batch, timing)


# ---------------------------------------------------------------------------------------------
# Markdown.


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e5 else f"{x:.3e}"


def table(rows: Sequence[Row], size_header: str, unit: str) -> list[str]:
    """Markdown rows: robot, devices, size, calls, compile, median, throughput, speed-up."""
    lines = [
        f"| robot | devices | {size_header} | timed calls | first call (s) | median (ms) "
        f"| {unit} | speed-up vs 1 device |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = speedup(r, rows)
        lines.append(
            f"| {r.robot} | {r.devices} | {r.size} | {r.timing.calls} | "
            f"{r.timing.compile_s:.2f} | {_fmt(1e3 * r.timing.median_s)} | "
            f"{_fmt(r.throughput)} | {'n/a' if s is None else f'{s:#.3g}x'} |"
        )
    return lines


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header(command: str, opts: dict) -> list[str]:
    """The run's record: command, date, devices, versions, CPU, sizes."""
    devices = jax.local_devices()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        "# Accelerator benchmark: train step, sampling, FK, data-parallel over devices",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"- Devices: {len(devices)} x {devices[0].device_kind} (platform "
        f"{devices[0].platform}, backend {jax.default_backend()}): "
        f"{', '.join(str(d) for d in devices)}",
        f"- Versions: python {platform.python_version()}, jax {jax.__version__}, "
        f"jaxlib {_version('jaxlib')}, flax {_version('flax')}",
        f"- CPU: {hardware.cpu_model()}, {os.cpu_count()} logical CPUs on the host, {cpus} "
        f"allowed to this process; load average (1 min) at the start / end: "
        f"{opts['load_start']:.2f} / {os.getloadavg()[0]:.2f} "
        "(other jobs on a shared host slow every number down)",
        f"- XLA_FLAGS in effect: `{os.environ.get('XLA_FLAGS', '')}`",
        f"- Preset: `{opts['preset']}`{_TINY_NOTE * opts['tiny']}; "
        f"robots: {', '.join(opts['robots'])}; timed calls: up to {opts['steps']} train steps, "
        f"up to {opts['repeats']} sampling / FK calls, fewer once {opts['budget_s']:g} s of "
        f"timed calls per row are spent (at least {_MIN_CALLS}); the count is in each table. "
        "Row n uses the first n devices.",
    ]


_TINY_NOTE = (
    " (tiny: K=2, 16-unit layers, B=8, S=2, compiled with `jax_disable_most_optimizations`; a "
    "smoke test, not a measurement)"
)
_NOTES = """\
- Data parallelism with `jax.sharding`: a 1-D mesh (axis "data") over the first n devices;
  contexts / targets / configurations (for 1 target: its samples) are split along it, the
  parameters and train state are replicated; the jitted functions are the library's own
  (`fit.build`'s train step, `AmortizedGMM.sample`, `Robot.link_poses`), compiled once per n.
- Strong scaling: the global batch is the same on every row (rounded up to a multiple of n
  where it does not divide, as the size column says); speed-up = throughput on n devices /
  throughput on 1 device, both from this run.
- Train step: only the jitted step (projection, losses, gradients, Adam, trust regions);
  component adding / removal and logging run outside it in `fit.fit` and are not timed. Contexts
  are drawn before timing (fresh ones every step). Throughput = B x K x S / median step time
  (samples of all components and contexts per second). "first call" includes compilation.
- Sampling uses the freshly initialised network: its cost does not depend on the weights.
- On CPU, `--host_devices=N` splits one machine's cores into N XLA devices: a speed-up there
  measures XLA's partitioning on the same cores, not more hardware.
"""


def budget_notes(opts: dict, rows: dict[str, list[Row]]) -> list[str]:
    """A note naming the rows whose timed calls the time budget cut short (none: no note)."""
    wanted = {key: opts["steps"] if key == "train" else opts["repeats"] for key in rows}
    short = [
        f"{key} {r.robot} on {r.devices} device(s): {r.timing.calls} of {wanted[key]}"
        for key, table_rows in rows.items()
        for r in table_rows
        if r.timing.calls < wanted[key]
    ]
    if not short:
        return []
    return [
        f"- Fewer timed calls than asked (the {opts['budget_s']:g} s budget per row ran out; "
        f"the sizes are unchanged): {'; '.join(short)}."
    ]


def render(command: str, opts: dict, rows: dict[str, list[Row]]) -> str:
    """The results markdown."""
    lines = header(command, opts)
    sections = {
        "train": ("Train step", "size", "throughput (contexts x samples / s)"),
        "single": (
            f"Sampling latency: 1 target x {opts['single_samples']} samples",
            "targets x samples",
            "samples / s",
        ),
        "batch": (
            f"Sampling latency: {opts['batch_targets']} targets x "
            f"{opts['samples_per_target']} samples",
            "targets x samples",
            "samples / s",
        ),
        "fk": ("FK throughput (end effector)", "configurations", "configurations / s"),
    }
    for key, (title, size_header, unit) in sections.items():
        if rows.get(key):
            lines += ["", f"## {title}", "", *table(rows[key], size_header, unit)]
    lines += ["", "## Notes", "", *budget_notes(opts, rows), _NOTES]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Program.


def define_flags() -> None:
    """The CLI flags (defined only when run as a program, so that importing defines none)."""
    flags.DEFINE_enum("preset", "full", ["quick", "full"], "Config preset of every robot.")
    flags.DEFINE_list("robots", ["panda", "talos"], "Robots (experiments/configs/<name>.py).")
    flags.DEFINE_integer("host_devices", None, "Force this many XLA:CPU host devices.")
    flags.DEFINE_bool("tiny", False, "Tiny network, batch and sizes: seconds (for the tests).")
    flags.DEFINE_list("measure", list(MEASUREMENTS), "Which of train, sample, fk to run.")
    flags.DEFINE_integer("steps", None, "Train steps timed per row (default 20; tiny 2).")
    flags.DEFINE_integer("repeats", None, "Sampling / FK calls timed per row (20; tiny 3).")
    flags.DEFINE_float("budget_s", 60.0, "Stop timing a row after this many seconds of calls.")
    flags.DEFINE_integer("single_samples", None, "Samples for the 1-target case (2000).")
    flags.DEFINE_integer("batch_targets", None, "Targets of the batched case (1000).")
    flags.DEFINE_integer("samples_per_target", None, "Samples per target, batched case (250).")
    flags.DEFINE_integer("fk_batch", None, "FK configurations per call (1e6; tiny 1024).")
    flags.DEFINE_string("output", DEFAULT_OUTPUT, "Markdown file to write ('' for none).")


def options(values: flags.FlagValues) -> dict:
    """The run's settings: the flags, with the tiny or full default sizes where unset.

    Raises:
        ValueError: an unknown measurement, or a size / count below 1.
    """
    defaults = TINY_SIZES if values.tiny else FULL_SIZES
    opts = {k: v if getattr(values, k) is None else getattr(values, k) for k, v in defaults.items()}
    unknown = sorted(set(values.measure) - set(MEASUREMENTS))
    if unknown:
        raise ValueError(f"unknown --measure {unknown}; choose from {', '.join(MEASUREMENTS)}")
    small = [f"--{k}={v}" for k, v in opts.items() if v < 1]
    if small or values.budget_s < 0:
        raise ValueError(f"sizes and counts must be >= 1 and --budget_s >= 0: {small}")
    if not values.robots:
        raise ValueError("--robots is empty; name at least one (e.g. --robots=panda)")
    opts |= {
        "preset": values.preset,
        "tiny": values.tiny,
        "robots": list(values.robots),
        "measure": list(values.measure),
        "budget_s": values.budget_s,
    }
    return opts


def mesh_rows(setup: Setup, mesh: Mesh, opts: dict) -> Iterator[tuple[str, Row]]:
    """(table key, row) of each measurement in `opts["measure"]` on `mesh`, one at a time."""
    budget, reps = opts["budget_s"], opts["repeats"]
    if "train" in opts["measure"]:
        yield "train", bench_train(setup, mesh, opts["steps"], budget)
    if "sample" in opts["measure"]:
        yield "single", bench_sample(setup, mesh, 1, opts["single_samples"], reps, budget)
        targets, per = opts["batch_targets"], opts["samples_per_target"]
        yield "batch", bench_sample(setup, mesh, targets, per, reps, budget)
    if "fk" in opts["measure"]:
        yield "fk", bench_fk(setup, mesh, opts["fk_batch"], reps, budget)


def run_robot(name: str, opts: dict, counts: Sequence[int], rows: dict[str, list[Row]]) -> None:
    """Appends one row per measurement and device count for robot `name`, logging each."""
    setup = build_setup(name, load_config(name, opts["preset"], opts["tiny"]))
    for n in counts:
        for key, row in mesh_rows(setup, make_mesh(n), opts):
            rows.setdefault(key, []).append(row)
            logging.info(
                "%s %s on %d device(s), %s: first call %.2f s, median %.3g ms over %d, %.3g /s",
                name, key, n, row.size, row.timing.compile_s, 1e3 * row.timing.median_s,
                row.timing.calls, row.throughput,
            )  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.INFO)
    try:
        if flags.FLAGS.host_devices is not None:
            set_host_devices(flags.FLAGS.host_devices)
        opts = options(flags.FLAGS)
        for name in opts["robots"]:  # fail on a wrong name before any benchmark runs
            load_config(name, opts["preset"], opts["tiny"])
    except ValueError as err:
        sys.exit(f"error: {err}")
    if opts["tiny"]:  # a smoke test: compile time dominates, speed does not matter
        jax.config.update("jax_disable_most_optimizations", True)
    opts["load_start"] = os.getloadavg()[0]
    counts = device_counts(jax.local_device_count())
    logging.info("devices: %s; rows for %s device(s)", jax.local_devices(), counts)
    rows: dict[str, list[Row]] = {}
    for name in opts["robots"]:
        run_robot(name, opts, counts, rows)
    # absl hands main only the positional arguments: the command is sys.argv as typed.
    text = render(command_line(sys.argv[1:], _XLA_FLAGS_GIVEN), opts, rows)
    print(text)
    if flags.FLAGS.output:
        os.makedirs(os.path.dirname(flags.FLAGS.output) or ".", exist_ok=True)
        with open(flags.FLAGS.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    define_flags()
    app.run(main)
