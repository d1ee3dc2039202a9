r"""Multi-process scaling: the same data-parallel train step on 1 process x 2 devices and on
2 processes x 1 device (`avips_jax.distributed`: localhost coordinator, gloo collectives), in one
run, as step time, throughput and their ratio.

    python -m benchmarks.multiprocess                       # Panda quick, 20 timed steps
    python -m benchmarks.multiprocess --tiny --output=/tmp/multiprocess.md   # the tests

On one CPU both layouts share the same cores, so the ratio measures what crossing a process
boundary costs (gloo's all-reduce through localhost instead of XLA's in-process one), not a
speed-up; on a cluster each process brings its own devices. Writes a markdown table
(default benchmarks/results/multiprocess.md) with the command, date and hardware.

Each layout runs in fresh subprocesses of this module (`--worker`): XLA's device count and
`jax.distributed` are fixed when a process starts. Every process times the same fixed number of
steps (a time budget could stop them at different steps, and the collectives would then wait
forever).
"""

import datetime
import json
import os
import platform
import socket
import subprocess
import sys

from absl import app, flags

from avips_jax import runtime
from benchmarks import accelerator

FLAGS = flags.FLAGS
_XLA_FLAGS_GIVEN = os.environ.get("XLA_FLAGS")  # as the user ran it: recorded in the command
DEFAULT_OUTPUT = "benchmarks/results/multiprocess.md"
LAYOUTS = (("1 process x 2 devices", 1, 2), ("2 processes x 1 device", 2, 1))


def define_flags() -> None:
    flags.DEFINE_string("robot", "panda", "Robot (experiments/configs/<name>.py).")
    flags.DEFINE_enum("preset", "quick", ["quick", "full"], "Config preset.")
    flags.DEFINE_bool("tiny", False, "Tiny network and batch: seconds (for the tests).")
    flags.DEFINE_integer("steps", None, "Timed train steps per layout (default 20; tiny 3).")
    flags.DEFINE_string("output", DEFAULT_OUTPUT, "Markdown file to write ('' for none).")
    flags.DEFINE_bool("worker", False, "Internal: time the step in this process, print JSON.")
    flags.DEFINE_string("coordinator_address", None, "Internal (worker): host:port.")
    flags.DEFINE_integer("num_processes", 1, "Internal (worker): processes of the layout.")
    flags.DEFINE_integer("process_id", 0, "Internal (worker): this process's index.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def worker() -> None:
    """Times the train step over every device of every process; process 0 prints a JSON row."""
    from avips_jax import distributed

    if FLAGS.num_processes > 1:
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    import jax

    setup = accelerator.build_setup(
        FLAGS.robot, accelerator.load_config(FLAGS.robot, FLAGS.preset, FLAGS.tiny)
    )
    row = accelerator.bench_train(setup, distributed.data_mesh(), FLAGS.steps, float("inf"))
    if distributed.is_writer():
        print(
            "ROW "
            + json.dumps(
                {
                    "devices": row.devices,
                    "processes": jax.process_count(),
                    "size": row.size,
                    "items": row.items,
                    "compile_s": row.timing.compile_s,
                    "median_s": row.timing.median_s,
                    "calls": row.timing.calls,
                }
            )
        )


def run_layout(processes: int, devices_each: int) -> dict:
    """Runs the workers of one layout and returns process 0's row."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = accelerator.with_host_devices(env.get("XLA_FLAGS"), devices_each)
    if FLAGS.tiny:
        env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "benchmarks.multiprocess",
        "--worker",
        f"--robot={FLAGS.robot}",
        f"--preset={FLAGS.preset}",
        f"--tiny={FLAGS.tiny}",
        f"--steps={FLAGS.steps}",
        f"--num_processes={processes}",
        f"--coordinator_address=localhost:{port}",
    ]
    procs = [
        subprocess.Popen(
            [*args, f"--process_id={i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    outputs = [p.communicate(timeout=1800) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({p.returncode}):\n{err[-3000:]}")
    rows = [line[4:] for line in outputs[0][0].splitlines() if line.startswith("ROW ")]
    return json.loads(rows[-1])


def render(command: str, results: list[tuple[str, dict]]) -> str:
    base = results[0][1]
    lines = [
        "# Multi-process scaling: one train step, 1 process x 2 devices vs 2 processes x 1 device",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Host: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
        f"robot {FLAGS.robot}, preset `{FLAGS.preset}`{' (tiny sizes)' if FLAGS.tiny else ''}; "
        f"{base['calls']} timed steps per layout after a compiling one.",
        "- Both layouts split the same batch over 2 CPU devices; across processes the gradient "
        "all-reduce goes through gloo over localhost. On one machine the ratio is the cost of the "
        "process boundary, not a speed-up.",
        "",
        "| layout | processes | devices | size | first call (s) | median step (ms) | "
        "throughput (contexts x samples / s) | step time vs 1 process |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, r in results:
        lines.append(
            f"| {name} | {r['processes']} | {r['devices']} | {r['size']} | "
            f"{r['compile_s']:.2f} | {1000 * r['median_s']:.3g} | "
            f"{r['items'] / r['median_s']:.3g} | {r['median_s'] / base['median_s']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    if FLAGS.steps is None:
        FLAGS.steps = 3 if FLAGS.tiny else 20
    if FLAGS.worker:
        worker()
        return
    results = [(name, run_layout(p, d)) for name, p, d in LAYOUTS]
    command = accelerator.command_line(sys.argv[1:], _XLA_FLAGS_GIVEN, "benchmarks.multiprocess")
    text = render(command, results)
    print(text)
    if FLAGS.output:
        os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    define_flags()
    app.run(main)
