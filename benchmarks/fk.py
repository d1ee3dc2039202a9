"""FK throughput: the jitted, batched float32 JAX FK against pinocchio and pytorch_kinematics.

For each robot and batch size B, the same B configurations (uniform within the joint limits,
seeded) go through:
  * JAX: `jax.jit(lambda q: robot.link_poses(q, robot.tips))` in float32 (the end effector for
    the arms, all four tips for TALOS), after a compiling warm-up call, each call ended by
    `block_until_ready`; the best (fastest) of up to `--repeats` calls (fewer when `--budget_s`
    runs out): on a shared host the fastest call is the one least disturbed by other jobs; the
    medians are in the details table.
  * pinocchio's Python loop: `pin.forwardKinematics` + `pin.updateFramePlacement` per tip per
    configuration, each pose copied into a preallocated array, on the first `--pin_configs`
    configurations of the set (its cost per configuration does not depend on B). The model is
    pinocchio's reduced model with every joint that is not a dof locked at 0 (the same joints
    our FK holds), which is the fastest pinocchio model of the same chain. q is reordered into
    pinocchio's joint order outside the timed loop.
  * pinocchio's batched path from Python, for reference: pinocchio has no batched FK; its only
    batched kinematic algorithms are `rneaInParallel` / `abaInParallel` on a `ModelPool`. The
    table's `pin rneaInParallel` column is RNEA (q, v = 0, a = 0) with one thread: it runs a
    forward-kinematics pass inside but returns torques, not poses.
  * pytorch_kinematics (optional, `--torch_python`): a Python with torch and
    pytorch_kinematics runs the same configurations in a subprocess in this run (float32,
    `torch.inference_mode`, threads = the cores allowed), see `_TORCH_WORKER`.

Every result is checked against JAX on the first configurations (max position difference, m).

Per core: `--cores=1` (default) pins this process, and with it XLA's thread pool, the pinocchio
loop and the torch subprocess, to one CPU with `os.sched_setaffinity` before jax starts its
backend (same effect as `taskset -c <cpu>`); `--cores=0` keeps all the CPUs allowed. On a GPU
machine the same command runs unchanged: jax picks the device (recorded in the results).

Usage (from the repository root):
    python -m benchmarks.fk                       # writes benchmarks/results/fk.md
    python -m benchmarks.fk --quick --out=/tmp/fk.md
    python -m benchmarks.fk --torch_python=/tmp/ptk_venv/bin/python   # with pytorch_kinematics
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

_XLA_FLAGS_GIVEN = os.environ.get("XLA_FLAGS")  # as the user ran the script, for the record

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pinocchio as pin  # noqa: E402

from avips_jax import hardware, kinematics, runtime  # noqa: E402

FULL_ROBOTS = kinematics.available_robots()
FULL_BATCHES = (1_000, 100_000, 1_000_000)
QUICK_ROBOTS = ("panda", "atlas_arm")
QUICK_BATCHES = (100, 1_000)
DEFAULT_OUT = "benchmarks/results/fk.md"
GOAL_BATCH = 100_000  # the issue's goal: JAX >= 10x pinocchio's loop per core at this batch
GOAL_RATIO = 10.0
GPU_GOAL = 1e9  # Panda configurations/s on a GPU
_CHECK_CONFIGS = 100  # configurations whose poses are compared across the implementations
_TORCH_WARMUPS = 3  # pytorch_kinematics' first calls at a new batch size are up to 100x slower


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call: median and best of `calls` timed calls."""

    median_s: float
    best_s: float
    calls: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", help="comma-separated batch sizes (default 1e3,1e5,1e6)")
    parser.add_argument("--robots", help=f"comma-separated (default {','.join(FULL_ROBOTS)})")
    parser.add_argument("--quick", action="store_true", help="panda + atlas_arm, batches 100, 1000")
    parser.add_argument("--out", help=f"markdown file (default {DEFAULT_OUT}; --quick: none)")
    parser.add_argument("--cores", type=int, default=1, help="CPUs to pin to (0: all allowed)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 7)")
    parser.add_argument("--budget_s", type=float, default=None, help="time per measurement")
    parser.add_argument("--pin_configs", type=int, default=None, help="pinocchio loop subset")
    parser.add_argument("--torch_python", help="a python with torch + pytorch_kinematics")
    parser.add_argument(
        "--torch_max_joint_configs",
        type=float,
        default=1.2e7,
        help="skip pytorch_kinematics where batch x its chain's joints exceeds this (memory)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    quick = args.quick
    args.batches = _ints(args.batches) or (QUICK_BATCHES if quick else FULL_BATCHES)
    args.robots = tuple(args.robots.split(",")) if args.robots else None
    args.robots = args.robots or (QUICK_ROBOTS if quick else FULL_ROBOTS)
    args.repeats = args.repeats or (2 if quick else 7)
    args.budget_s = args.budget_s or (0.5 if quick else 10.0)
    args.pin_configs = args.pin_configs or (200 if quick else 2000)
    args.out = args.out or (None if quick else DEFAULT_OUT)
    return args


def _ints(text: str | None) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in text.split(",")) if text else ()


def restrict_cores(n: int) -> tuple[int, ...]:
    """Pins this process to its first n allowed CPUs (n = 0: unchanged); returns the CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    if n > 0:
        os.sched_setaffinity(0, allowed[:n])
    return tuple(sorted(os.sched_getaffinity(0)))


def time_calls(fn, repeats: int, budget_s: float) -> Timing:
    """Times up to `repeats` calls of fn() (at least one; no new call once `budget_s` is spent)."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(float(np.median(times)), float(np.min(times)), len(times))


def random_configurations(robot: kinematics.Robot, n: int, seed: int) -> np.ndarray:
    """(n, dof) float32 configurations uniform within the limits."""
    rng = np.random.default_rng(seed)
    return rng.uniform(robot.lower, robot.upper, (n, robot.dof)).astype(np.float32)


def time_jax(robot, q: np.ndarray, batches, repeats, budget_s):
    """{batch: Timing} of the jitted FK of `robot.tips`, compile seconds, and check poses."""
    links = robot.tips
    fk = jax.jit(lambda x: robot.link_poses(x, links))
    timings, compile_s = {}, {}
    for batch in batches:
        x = jax.device_put(q[:batch])
        t0 = time.perf_counter()
        fk(x).block_until_ready()
        compile_s[batch] = time.perf_counter() - t0
        timings[batch] = time_calls(lambda x=x: fk(x).block_until_ready(), repeats, budget_s)
    check = np.asarray(robot.link_poses(q[:_CHECK_CONFIGS], links), np.float64)
    return timings, compile_s, check


@dataclasses.dataclass(frozen=True)
class PinChain:
    """pinocchio's reduced model of a robot (non-dof joints locked at 0) and its tip frames."""

    model: object
    data: object
    frame_ids: tuple[int, ...]
    q_index: np.ndarray  # (dof,) position in pinocchio's q of each of our dofs


def pin_chain(robot: kinematics.Robot) -> PinChain:
    full = pin.buildModelFromUrdf(str(kinematics.urdf_path(robot.name)))
    locked = [full.getJointId(j) for j in full.names[1:] if j not in robot.joint_names]
    model = pin.buildReducedModel(full, locked, pin.neutral(full))
    joints = [model.joints[model.getJointId(j)] for j in robot.joint_names]
    if model.nq != robot.dof or any(j.nq != 1 for j in joints):
        raise ValueError(f"{robot.name}: pinocchio's reduced model has nq={model.nq}")
    frame_ids = tuple(model.getFrameId(link) for link in robot.tips)
    index = np.array([j.idx_q for j in joints])
    return PinChain(model, model.createData(), frame_ids, index)


def pin_configurations(chain: PinChain, q: np.ndarray) -> np.ndarray:
    """(n, nq) float64 C-contiguous pinocchio configurations of our q (n, dof)."""
    out = np.zeros((q.shape[0], chain.model.nq))
    out[:, chain.q_index] = q
    return out


def pin_loop(chain: PinChain, qs: np.ndarray) -> np.ndarray:
    """(n, tips, 4, 4) poses: pinocchio's FK in a Python loop, one configuration at a time."""
    model, data = chain.model, chain.data
    out = np.empty((qs.shape[0], len(chain.frame_ids), 4, 4))
    for i in range(qs.shape[0]):
        pin.forwardKinematics(model, data, qs[i])
        for k, frame in enumerate(chain.frame_ids):
            out[i, k] = pin.updateFramePlacement(model, data, frame).homogeneous
    return out


def time_pin(robot, q: np.ndarray, n: int, repeats, budget_s):
    """Timings of the loop and of rneaInParallel (1 thread) on q[:n], and check poses."""
    chain = pin_chain(robot)
    qs = pin_configurations(chain, q[:n].astype(np.float64))
    check = pin_loop(chain, qs[:_CHECK_CONFIGS])
    loop = time_calls(lambda: pin_loop(chain, qs), repeats, budget_s)
    pool = pin.ModelPool(chain.model, 1)
    zeros = np.zeros((chain.model.nv, n), order="F")
    q_cols = np.asfortranarray(qs.T)
    rnea = time_calls(lambda: pin.rneaInParallel(1, pool, q_cols, zeros, zeros), repeats, budget_s)
    return loop, rnea, check


# Runs under --torch_python: argv[1] = spec JSON path, argv[2] = result JSON path.
_TORCH_WORKER = r"""
import json, os, sys, time, warnings
import numpy as np, torch, pytorch_kinematics as pk
from importlib.metadata import version
warnings.filterwarnings("ignore")
spec = json.load(open(sys.argv[1]))
torch.set_num_threads(len(os.sched_getaffinity(0)))
def time_calls(fn, repeats, budget_s):
    times, start = [], time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return [float(np.median(times)), float(np.min(times)), len(times)]
out = {"versions": {"torch": torch.__version__, "pytorch_kinematics":
       version("pytorch_kinematics")}, "threads": torch.get_num_threads(), "robots": {}}
for r in spec["robots"]:
    data = open(r["urdf"], "rb").read()
    if len(r["tips"]) == 1:
        chain = pk.build_serial_chain_from_urdf(data, r["tips"][0], r["chain_root"])
        base = torch.tensor(r["base"], dtype=torch.float32)
        def fk(th):
            return base @ chain.forward_kinematics(th).get_matrix()
    else:
        chain = pk.build_chain_from_urdf(data)
        frames = chain.get_frame_indices(*r["tips"])
        def fk(th):
            poses = chain.forward_kinematics(th, frame_indices=frames)
            return torch.stack([poses[t].get_matrix() for t in r["tips"]], 1)
    names = chain.get_joint_parameter_names()
    q = np.load(r["q"])
    th_all = np.zeros((q.shape[0], len(names)), np.float32)
    th_all[:, [names.index(j) for j in r["joints"]]] = q
    th_all = torch.from_numpy(th_all)
    res = {"timings": {}}
    with torch.inference_mode():
        res["check"] = fk(th_all[: spec["check"]]).reshape(spec["check"], -1, 4, 4).tolist()
        for b in spec["batches"]:
            if b * len(names) > spec["max_joint_configs"]:
                res["timings"][str(b)] = None  # skipped: too much memory
                continue
            th = th_all[:b].contiguous()
            time_calls(lambda: fk(th), spec["warmups"], spec["budget_s"])  # first calls are slow
            res["timings"][str(b)] = time_calls(lambda: fk(th), spec["repeats"], spec["budget_s"])
    out["robots"][r["name"]] = res
json.dump(out, open(sys.argv[2], "w"))
"""


def _torch_robot_spec(robot: kinematics.Robot, q_path: str) -> dict:
    """What the torch worker needs for one robot (a serial chain starts at the parent link of
    the first dof, the held joints before it folded into a constant `base` pose)."""
    spec = {"name": robot.name, "urdf": str(kinematics.urdf_path(robot.name)), "q": q_path}
    spec.update(tips=list(robot.tips), joints=list(robot.joint_names))
    if len(robot.tips) == 1:
        model = kinematics.load_urdf(kinematics.urdf_path(robot.name))
        chain_root = model.joints[robot.joint_names[0]].parent
        base = robot.link_poses(np.zeros(robot.dof, np.float32), [chain_root])[0]
        spec.update(chain_root=chain_root, base=np.asarray(base).tolist())
    return spec


def run_torch(args, robots, configs, tmp: str) -> tuple[dict | None, str]:
    """Runs `_TORCH_WORKER` under `args.torch_python`; (results or None, a note)."""
    if not args.torch_python:
        return None, "not run: pass --torch_python (see the notes)"
    specs = []
    for robot in robots:
        path = os.path.join(tmp, f"{robot.name}.npy")
        np.save(path, configs[robot.name])
        specs.append(_torch_robot_spec(robot, path))
    spec = dict(robots=specs, batches=list(args.batches), repeats=args.repeats)
    spec.update(budget_s=args.budget_s, check=_CHECK_CONFIGS, warmups=_TORCH_WARMUPS)
    spec.update(max_joint_configs=args.torch_max_joint_configs)
    spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "torch.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    cmd = [args.torch_python, "-c", _TORCH_WORKER, spec_path, out_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1][:200]
        return None, f"failed (exit {proc.returncode}): {last}"
    with open(out_path) as f:
        return json.load(f), "ran"


def _max_position_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a)[..., :3, 3] - np.asarray(b)[..., :3, 3])))


def benchmark_robot(robot, q, args, torch_result) -> dict:
    """All measurements of one robot (timings in configurations/s)."""
    jax_t, compile_s, jax_check = time_jax(robot, q, args.batches, args.repeats, args.budget_s)
    loop, rnea, pin_check = time_pin(robot, q, args.pin_configs, args.repeats, args.budget_s)
    n = args.pin_configs
    row = dict(
        name=robot.name,
        dof=robot.dof,
        outputs=len(robot.tips),
        jax={b: b / t.best_s for b, t in jax_t.items()},
        jax_median={b: b / t.median_s for b, t in jax_t.items()},
        calls={b: t.calls for b, t in jax_t.items()},
        compile_s=compile_s,
        pin_loop=n / loop.best_s,
        pin_loop_median=n / loop.median_s,
        pin_rnea=n / rnea.best_s,
        err_pin=_max_position_error(jax_check, pin_check),
        torch={},
        torch_median={},
        torch_skipped=set(),
        err_torch=None,
    )
    if torch_result is not None:
        mine = torch_result["robots"][robot.name]
        timed = {int(b): t for b, t in mine["timings"].items() if t is not None}
        row["torch"] = {b: b / t[1] for b, t in timed.items()}
        row["torch_median"] = {b: b / t[0] for b, t in timed.items()}
        row["torch_skipped"] = {int(b) for b, t in mine["timings"].items() if t is None}
        row["err_torch"] = _max_position_error(jax_check, np.array(mine["check"]))
    return row


def _batch(b: int) -> str:
    """1000 -> "1e3", 1500 -> "1500"."""
    exponent = len(str(b)) - 1
    return f"1e{exponent}" if b == 10**exponent and b >= 1000 else str(b)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.1f}x"


def _header(args, argv: list[str], cpus: tuple[int, ...], torch_result, torch_note) -> list[str]:
    command = shlex.join(["python", "-m", "benchmarks.fk", *argv])
    if _XLA_FLAGS_GIVEN is not None:
        command = f"XLA_FLAGS={shlex.quote(_XLA_FLAGS_GIVEN)} {command}"
    devices = jax.devices()
    versions = [
        f"python {platform.python_version()}",
        f"jax {jax.__version__}",
        f"jaxlib {jax.lib.__version__}",
        f"numpy {np.__version__}",
        f"pinocchio (pin) {pin.__version__}",
    ]
    if torch_result is not None:
        versions += [f"{k} {v}" for k, v in torch_result["versions"].items()]
        torch_note = f"{torch_note}, {torch_result['threads']} torch thread(s)"
    cores = f"pinned to CPU {list(cpus)}" if args.cores > 0 else f"all allowed CPUs {list(cpus)}"
    return [
        "# Forward-kinematics throughput",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"- CPU: {hardware.cpu_model()}, {os.cpu_count()} logical CPUs on the host; "
        f"this run: {cores} "
        f"({len(cpus)} core(s) used by JAX, pinocchio and torch alike)",
        f"- JAX devices: {', '.join(f'{d} ({d.device_kind})' for d in devices)}; "
        f"backend {jax.default_backend()}",
        f"- Versions: {', '.join(versions)}",
        f"- XLA_FLAGS in effect (the script adds `avips_jax.runtime`'s CPU-safety flags): "
        f"`{os.environ.get('XLA_FLAGS', '')}`",
        f"- pytorch_kinematics: {torch_note}",
        f"- Load average (1 min) at the end of the run: {os.getloadavg()[0]:.2f} "
        "(the host is shared: other jobs may run on the same cores)",
        f"- Timing: best of up to {args.repeats} calls after a warm-up (compiling) call "
        f"({_TORCH_WARMUPS} warm-up calls for pytorch_kinematics), "
        f"each ended by `block_until_ready`, at most {args.budget_s:g} s of calls per "
        f"measurement; pinocchio on the first {args.pin_configs} configurations of each set.",
    ]


def _table(rows: list[dict], batches) -> list[str]:
    lines = [
        "| robot | dof | poses / config | batch | JAX float32 | pinocchio loop | JAX / pin loop "
        "| pytorch_kinematics | JAX / ptk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for b in batches:
            jax_b, pin_b, torch_b = r["jax"][b], r["pin_loop"], r["torch"].get(b)
            lines.append(
                f"| {r['name']} | {r['dof']} | {r['outputs']} | {_batch(b)} | {_fmt(jax_b)} | "
                f"{_fmt(pin_b)} | {_ratio(jax_b, pin_b)} | "
                f"{'skipped (memory)' if b in r['torch_skipped'] else _fmt(torch_b)} | "
                f"{_ratio(jax_b, torch_b)} |"
            )
    return lines


def _details(rows: list[dict], batches) -> list[str]:
    lines = [
        "| robot | JAX median (cfg/s) per batch | JAX compile (s) per batch | pin loop median "
        "| pin rneaInParallel | ptk median per batch | max pos. diff. JAX vs pin (m) "
        "| vs ptk (m) |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        median = ", ".join(_fmt(r["jax_median"][b]) for b in batches)
        torch = ", ".join(_fmt(r["torch_median"].get(b)) for b in batches)
        compile_s = ", ".join(f"{r['compile_s'][b]:.2f}" for b in batches)
        err_torch = "n/a" if r["err_torch"] is None else f"{r['err_torch']:.1e}"
        lines.append(
            f"| {r['name']} | {median} | {compile_s} | {_fmt(r['pin_loop_median'])} | "
            f"{_fmt(r['pin_rnea'])} | {torch} | "
            f"{r['err_pin']:.1e} | {err_torch} |"
        )
    return lines


def _goals(args, rows: list[dict], cpus) -> list[str]:
    lines = []
    if GOAL_BATCH in args.batches:
        ratios = {r["name"]: r["jax"][GOAL_BATCH] / r["pin_loop"] for r in rows}
        met = [n for n, v in ratios.items() if v >= GOAL_RATIO]
        scope = "per CPU core" if len(cpus) == 1 else f"on {len(cpus)} cores (not per core)"
        lines.append(
            f"- JAX >= {GOAL_RATIO:g}x pinocchio's loop at batch {_batch(GOAL_BATCH)}, {scope}, on "
            f"{jax.default_backend()}: met for {len(met)}/{len(ratios)} robots "
            f"(ratios {', '.join(f'{n} {v:.1f}x' for n, v in ratios.items())})."
        )
    else:
        lines.append(f"- Batch {_batch(GOAL_BATCH)} not in this run: the 10x goal is not assessed.")
    panda = [r for r in rows if r["name"] == "panda"]
    if jax.default_backend() == "gpu" and panda:
        best = max(panda[0]["jax"].values())
        verdict = "met" if best >= GPU_GOAL else "not met"
        lines.append(f"- GPU goal (Panda > {GPU_GOAL:.0e} cfg/s): {_fmt(best)} cfg/s, {verdict}.")
    else:
        lines.append("- GPU goal (Panda > 1e9 cfg/s): no GPU device in this run, not assessed.")
    return lines


_NOTES = """\
- Throughputs are configurations per second. pinocchio's loop cost per configuration does not
  depend on the batch size, so one number (measured on the subset) serves every batch; the
  ratios compare it with JAX at each batch.
- pinocchio has no batched forward kinematics reachable from Python: `forwardKinematics` and
  `updateFramePlacement(s)` take one configuration, and the Python wheel (`pin`) ships no
  `pinocchio.casadi` (no CasADi code generation to map over a batch). Its only batched
  kinematic algorithms are `rneaInParallel` / `abaInParallel` over a `ModelPool`, which return
  torques / accelerations, not poses. `pin rneaInParallel` above is RNEA at v = a = 0 (gravity
  torques) with one thread, on the same configurations: a forward-kinematics pass plus the
  recursive dynamics, shown only as pinocchio's batched C++ speed without Python overhead.
- pytorch_kinematics is not a project dependency: `pip install pytorch-kinematics` asks for
  `torch>=2.1`, which on a machine without torch pulls the default CUDA build of torch (several
  GB). For this table it ran from a throwaway venv with the CPU wheel of torch:
  `python3 -m venv /tmp/ptk_venv && /tmp/ptk_venv/bin/pip install torch==2.13.0 &&
  /tmp/ptk_venv/bin/pip install pytorch-kinematics==0.10.0` (1.2 GB), passed as
  `--torch_python=/tmp/ptk_venv/bin/python`. Its serial chains start at the parent link of the
  first dof (pytorch_kinematics cannot lock joints), with the held joints before it folded into
  a constant base pose that is multiplied in (inside the timing); TALOS uses its whole tree
  (32 joints, head and gripper joints at 0) with the four tip frames, stacked into
  (B, 4, 4, 4) like the JAX output. Its memory grows with batch x joints (about 0.7 KB per
  joint-configuration: 4.3 GB resident for Panda at 1e6, 2.5 GB for TALOS at 1e5; a first full
  run peaked at 21.6 GB for TALOS at 1e6 on this 24 GB host), so it is skipped where batch x
  joints > `--torch_max_joint_configs` (default 1.2e7: TALOS's 32 joints at 1e6).
- JAX outputs (..., poses, 4, 4) float32 for `robot.tips` (TALOS: both grippers and soles);
  the JAX FK is `avips_jax.kinematics` (compact unrolled chain, polynomial float32 sin/cos).
  At batch 1e6 its input and output (28 MB and 64 MB for Panda) no longer fit the CPU caches
  and the CPU throughput falls below that at 1e5. For scale: a trivial jitted kernel that only
  writes a (B, 1, 4, 4) float32 array reached 5.5e8 configurations/s at 1e5 but 4.0e7/s at
  1e6 on this host (one core; measured separately, not by this script).
"""


def render(args, argv, cpus, rows, torch_result, torch_note) -> str:
    """The results markdown."""
    lines = _header(args, argv, cpus, torch_result, torch_note)
    lines += ["", "## Throughput (configurations/s)", "", *_table(rows, args.batches)]
    lines += ["", "## Goals", "", *_goals(args, rows, cpus)]
    lines += ["", "## Details", "", *_details(rows, args.batches)]
    lines += ["", "## Notes", "", _NOTES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Runs the benchmark, prints the markdown, writes it to `--out` if set; returns it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    cpus = restrict_cores(args.cores)  # before jax starts its backend (and thread pool)
    robots = [kinematics.load_robot(name) for name in args.robots]
    n = max(max(args.batches), args.pin_configs, _CHECK_CONFIGS)
    configs = {r.name: random_configurations(r, n, args.seed) for r in robots}
    with tempfile.TemporaryDirectory() as tmp:
        torch_result, torch_note = run_torch(args, robots, configs, tmp)
    rows = []
    for robot in robots:
        print(f"benchmarking {robot.name} ...", file=sys.stderr, flush=True)
        rows.append(benchmark_robot(robot, configs[robot.name], args, torch_result))
    text = render(args, argv, cpus, rows, torch_result, torch_note)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    runtime.set_cpu_safety_flags()
    main()
