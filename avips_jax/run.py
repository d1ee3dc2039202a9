"""A training run in a directory: config.json, checkpoints, TensorBoard, history; resumable.

    result = run.train_and_checkpoint(config, "runs/panda")   # fit.FitResult, or None if done
    result, metrics = run.train_and_evaluate(config, "runs/panda")   # + metrics.json, plots

The run directory gets config.json (the resolved config), checkpoints/<step>/ (orbax, every
`train.checkpoint_every` steps and at the end), tensorboard/ (scalars under train/),
history.jsonl (one JSON line of scalars per logged step) and, for IK on a robot file of your own,
robot/ (a copy of the file and its sha256, which the run trains and loads from:
`robot_snapshot`). Called again on the same directory with
the same config, it resumes from the newest checkpoint and reaches exactly the result of an
uninterrupted run; a finished run is left as it is. A different config is refused
(`ConfigMismatchError`, the differing keys listed) and nothing in the directory is overwritten.

Continuing a run: a config that differs only in `CONTINUABLE_KEYS` continues the run where it
stands: a larger `train.num_steps` trains a finished run longer (a smaller one is refused), and
the bookkeeping keys (log, checkpoint and retention intervals) may change at any time. The
remaining steps follow the schedule of the new `num_steps`: the cosine learning rates, the
annealing, the gate-refit phase and the component add / merge windows are fractions of it, so
they stretch, and a finished run's decayed learning rates rise again (a warm restart). The result
therefore equals a run trained with the new `num_steps` from the start only where nothing
depends on `num_steps`. config.json takes the new values; the one it replaces is kept as
`config.until_step<N>.json`.

Faults (each tested in tests/test_faults.py):
- a second training process on the directory exits at once, naming the first (`run_lock`);
- SIGINT / SIGTERM save a checkpoint of the current step and end with `preemption.Preempted`
  (the relaunch resumes bit-identically);
- a diverged run stops with `divergence.DivergenceError` (no non-finite checkpoint is written);
- a damaged newest checkpoint (`checkpoint.CorruptCheckpointError`) is moved to
  `corrupt_checkpoints/` and the run resumes from the newest intact one.

`experiments/train.py` is its command line; `checkpoint.load_model(workdir)` reads a run back.
"""

import json
import pathlib
import shutil

import ml_collections
import tensorboardX

from avips_jax import (
    checkpoint,
    distributed,
    fit,
    methods,
    preemption,
    refine,
    robot_snapshot,
    run_lock,
    run_report,
    targets,
)
from avips_jax.settings import Settings

HISTORY_FILE = "history.jsonl"
TENSORBOARD_DIR = "tensorboard"
CORRUPT_DIR = "corrupt_checkpoints"
# Keys a relaunch may change on an existing run: the length (raised only) and bookkeeping that
# does not touch the parameters.
CONTINUABLE_KEYS = (
    "train.num_steps",
    "train.log_every",
    "train.log_samples",
    "train.checkpoint_every",
    "train.keep_checkpoints",
)


class ConfigMismatchError(ValueError):
    """The run directory holds a run of another config."""


def check_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> int | None:
    """The step to resume from (None: start afresh), after checking the directory's config.

    A config differing only in `CONTINUABLE_KEYS` passes (a continuation; `num_steps` may only
    grow); `continue_config` then writes it.

    Raises:
        ConfigMismatchError: `workdir/config.json` differs from `config` in another key, or
            lowers `train.num_steps` (lists the keys).
        CheckpointError: checkpoints without a config.json.
    """
    step = checkpoint.latest_step(workdir)
    if not (workdir / checkpoint.CONFIG_FILE).exists():
        if step is not None:
            raise checkpoint.CheckpointError(
                f"{workdir} has checkpoints but no {checkpoint.CONFIG_FILE}; use another workdir"
            )
        return None
    diffs = checkpoint.config_differences(checkpoint.load_config(workdir), config)
    refused = [
        (key, a, b)
        for key, a, b in diffs
        if key not in CONTINUABLE_KEYS or (key == "train.num_steps" and b < a)
    ]
    if refused:
        lines = "\n".join(f"  {key}: saved {a!r}, given {b!r}" for key, a, b in refused)
        raise ConfigMismatchError(
            f"{workdir / checkpoint.CONFIG_FILE} differs from the given config in "
            f"{len(refused)} key(s):\n{lines}\nUse another --workdir or the saved config "
            f"(a run may continue with a larger train.num_steps; the keys a relaunch may "
            f"change: {', '.join(CONTINUABLE_KEYS)})."
        )
    return step


def continue_config(workdir: pathlib.Path, config: ml_collections.ConfigDict, step: int) -> None:
    """Writes `config` (which `check_workdir` passed) as the run's config.json where it differs
    from the saved one, keeping the old file as `config.until_step<step>.json`."""
    saved = checkpoint.load_config(workdir)
    diffs = checkpoint.config_differences(saved, config)
    if not diffs:
        return
    path = workdir / checkpoint.CONFIG_FILE
    shutil.copy2(path, workdir / f"config.until_step{step}.json")
    checkpoint.save_config(workdir, config)
    changes = ", ".join(f"{key} {a} -> {b}" for key, a, b in diffs)
    print(f"{workdir}: continuing from step {step} with {changes}.")


def restore_newest_intact(workdir: pathlib.Path, trainer, mesh=None) -> tuple[int, object, dict]:
    """(step, state, records) of the newest checkpoint that reads back intact. Damaged newer
    ones are moved to `<workdir>/corrupt_checkpoints/` (never deleted), each with a one-line
    message, but only once an intact one is found.

    Raises:
        checkpoint.CorruptCheckpointError: no checkpoint is intact (nothing is moved).
    """
    like = checkpoint.abstract_state(trainer, mesh)
    damaged = []
    for step in reversed(checkpoint.all_steps(workdir)):
        try:
            found = checkpoint.restore_with_records(workdir, like, step)
        except checkpoint.CorruptCheckpointError as err:
            damaged.append((step, err))
            continue
        for bad_step, err in damaged if distributed.is_writer() else ():
            dest = workdir / CORRUPT_DIR / str(bad_step)
            dest.parent.mkdir(exist_ok=True)
            if dest.exists():
                dest = dest.with_name(f"{bad_step}.{len(list(dest.parent.iterdir()))}")
            shutil.move(checkpoint.checkpoint_dir(workdir) / str(bad_step), dest)
            print(f"{err}; moved it to {dest} and resuming from step {step}.")
        return found
    raise checkpoint.CorruptCheckpointError(
        f"no intact checkpoint in {checkpoint.checkpoint_dir(workdir)}: "
        + "; ".join(str(err) for _, err in damaged)
    )


def _write_history(path: pathlib.Path, history: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
    tmp.replace(path)


def _make_logger(workdir: pathlib.Path, config, records: fit.RunRecords, resumed_step: int | None):
    """TensorBoard writer and the history file, both matching the records at the restored step;
    returns (writer, log(scalars))."""
    history_path = workdir / HISTORY_FILE
    _write_history(history_path, records.history)  # drops lines logged after the checkpoint
    purge = None if resumed_step is None else resumed_step + 1  # TensorBoard drops steps >= purge
    writer = tensorboardX.SummaryWriter(str(workdir / TENSORBOARD_DIR), purge_step=purge)
    if resumed_step is None:
        writer.add_text("config", "```\n" + config.to_json(indent=2) + "\n```", 0)

    def log(scalars: dict) -> None:
        step = int(scalars["step"])
        with history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(scalars) + "\n")
        for key, value in scalars.items():
            if key != "step":
                writer.add_scalar(f"train/{key}", value, step)
        writer.flush()

    return writer, log


def train_and_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    progress: bool = True,
    on_step=None,
    mesh=None,
) -> fit.FitResult | None:
    """Trains `config` in `workdir`, resuming from its newest checkpoint.

    Args:
        config: the resolved config.
        workdir: the run directory.
        progress: show a tqdm bar.
        on_step: extra per-step hook, called after checkpointing (tests use it to stop a run).
        mesh: train data-parallel over this device mesh (`distributed.data_mesh()`; contexts
            sharded, state replicated). Across several processes every process calls this with
            the same arguments; process 0 alone writes the directory's files but the
            checkpoints, which orbax writes collectively.

    Returns:
        The `fit.FitResult`, or None if the run had already finished (nothing is written then).

    Raises:
        ConfigMismatchError, checkpoint.CheckpointError, ValueError (bad config), TypeError
        (bad target settings): before anything is written.
        run_lock.RunDirectoryBusyError: another process is training in `workdir` (its lock,
            `train.lock`, names it); nothing is written.
        preemption.Preempted: SIGINT or SIGTERM arrived; the checkpoint of the step under way
            is saved.
        divergence.DivergenceError: the run diverged; its newest checkpoint is the last finite one.
        checkpoint.CorruptCheckpointError: no checkpoint of the run reads back intact.
    """
    workdir = pathlib.Path(workdir)
    settings = Settings.from_config(config)
    methods.check_method(settings)
    step = check_workdir(workdir, config)
    # A run trains on its own copy of a robot file (robot_snapshot): a resumed one reads it.
    target = targets.from_config(robot_snapshot.use_stored(config, workdir))
    trainer = methods.make_trainer(settings, target)  # its refusals come before any write
    _check_mesh(settings, mesh)
    num_steps = settings.schedule.num_steps
    if step is not None and step >= num_steps and _intact(workdir, trainer, mesh):
        _say(f"{workdir}: the run is complete ({step} of {num_steps} steps).")
        return None
    if not distributed.is_writer():
        return _train_locked(config, settings, workdir, target, trainer, progress, on_step, mesh)
    workdir.mkdir(parents=True, exist_ok=True)
    with run_lock.hold(workdir):  # one writer: another training process here fails at once
        return _train_locked(config, settings, workdir, target, trainer, progress, on_step, mesh)


def _say(message: str) -> None:
    """Prints `message` in process 0 only (every process of a multi-process run gets here)."""
    if distributed.is_writer():
        print(message)


def _check_mesh(settings: Settings, mesh) -> None:
    """ValueError unless the context batch splits evenly over the mesh's devices."""
    if mesh is not None and settings.schedule.batch_contexts % mesh.size:
        raise ValueError(
            f"train.batch_contexts={settings.schedule.batch_contexts} must be a multiple of the "
            f"{mesh.size} devices it is split over"
        )


def _intact(workdir: pathlib.Path, trainer, mesh=None) -> bool:
    """Whether the newest checkpoint reads back intact (a damaged one is set aside and the run
    retrained from the newest intact one under the lock: `restore_newest_intact`)."""
    try:
        checkpoint.restore(workdir, checkpoint.abstract_state(trainer, mesh))
    except checkpoint.CorruptCheckpointError:
        return False
    return True


def _train_locked(config, settings, workdir, target, trainer, progress, on_step, mesh):
    """`train_and_checkpoint` once it holds the directory's lock (process 0; the others hold
    none): the directory is read again (a run that finished meanwhile is left as it is), then
    trained from where it stands."""
    writer = distributed.is_writer()
    step = check_workdir(workdir, config)
    t = settings.schedule
    state, records = None, fit.RunRecords()
    if step is not None:
        step, state, saved_records = restore_newest_intact(workdir, trainer, mesh)
        records = fit.RunRecords.from_json(saved_records)
        if step >= t.num_steps:
            _say(f"{workdir}: the run is complete ({step} of {t.num_steps} steps).")
            return None
        if writer:
            continue_config(workdir, config, step)
        _say(f"{workdir}: resuming from step {step} of {t.num_steps}.")
    if writer and not (workdir / checkpoint.CONFIG_FILE).exists():
        checkpoint.save_config(workdir, config)
    if writer and step is None:
        robot_snapshot.store(workdir, config)
    distributed.barrier("avips_jax.run.setup")  # the others read the robot copy process 0 made
    stored = robot_snapshot.use_stored(config, workdir)
    if step is None and checkpoint.config_differences(stored, config):
        target = targets.from_config(stored)
        trainer = methods.make_trainer(settings, target)
    writer_tb, log = _make_logger(workdir, config, records, step) if writer else (None, None)

    def save(report: fit.StepReport) -> None:
        checkpoint.save(
            workdir, report.state, keep=t.keep_checkpoints, records=report.records.to_json()
        )

    with preemption.stop_requests() as stop:

        def hook(report: fit.StepReport) -> None:
            if report.scalars is not None and log is not None:
                log(report.scalars)
            saved = report.step % t.checkpoint_every == 0 or report.step == report.num_steps
            if saved:
                save(report)
            if on_step is not None:
                on_step(report)
            # Across processes, all stop at the same step once any got the signal.
            signum = distributed.first_signal(stop.signum)
            if signum is not None and report.step < report.num_steps:
                if not saved:
                    save(report)
                raise preemption.Preempted(signum, report.step)

        try:
            return fit.fit(
                settings,
                target=target,
                trainer=trainer,
                mesh=mesh,
                progress=progress and writer,
                initial_state=state,
                records=records,
                on_step=hook,
            )
        finally:
            if writer_tb is not None:
                writer_tb.close()


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    progress: bool = True,
    on_step=None,
    refine_fn=refine.refine,
    latency: bool = True,
    mesh=None,
) -> tuple[fit.FitResult | None, dict | None]:
    """`train_and_checkpoint`, then the evaluation of the final model on the config's fixed test
    set (`run_report.evaluate_run`): `<workdir>/plots/*.png` and `<workdir>/metrics.json`.

    Args:
        config, workdir, progress, on_step, mesh: as `train_and_checkpoint` (the evaluation
            runs in process 0 only, `in_writer`).
        refine_fn: the LM refinement of the refined-success, MMD and coverage metrics (None:
            skip them).
        latency: also time sampling.

    Returns:
        (the `fit.FitResult`, or None if the run had already finished; the metrics, or None for
        a target without a robot, which the IK evaluation does not apply to).

    Raises:
        As `train_and_checkpoint`, before anything is written.
    """
    result = train_and_checkpoint(config, workdir, progress=progress, on_step=on_step, mesh=mesh)
    workdir = pathlib.Path(workdir)

    def evaluate(trained: checkpoint.TrainedRun) -> dict | None:
        if not isinstance(trained.target, targets.RobotTarget):
            return None
        metrics, _ = run_report.evaluate_run(trained, refine_fn=refine_fn, latency=latency)
        run_report.write_metrics(workdir / run_report.METRICS_FILE, metrics)
        return metrics

    return result, in_writer(workdir, evaluate)


def in_writer(workdir: str | pathlib.Path, fn):
    """`fn(checkpoint.load_model(workdir))` in process 0, which returns its result; None in the
    other processes of a multi-process run. Every process loads the model (orbax restores
    collectively: process 0 alone would wait forever); the others then wait until process 0 is
    done (`distributed.wait_for_all`), so that none exits while it works."""
    trained = checkpoint.load_model(workdir)
    if not distributed.is_writer():
        distributed.wait_for_all("avips_jax.run.in_writer")
        return None
    try:
        return fn(trained)
    finally:
        distributed.wait_for_all("avips_jax.run.in_writer")
