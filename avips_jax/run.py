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

`experiments/train.py` is its command line; `checkpoint.load_model(workdir)` reads a run back.
"""

import json
import pathlib

import ml_collections
import tensorboardX

from avips_jax import (
    checkpoint,
    fit,
    methods,
    refine,
    robot_snapshot,
    run_lock,
    run_report,
    targets,
)
from avips_jax.settings import Settings

HISTORY_FILE = "history.jsonl"
TENSORBOARD_DIR = "tensorboard"


class ConfigMismatchError(ValueError):
    """The run directory holds a run of another config."""


def check_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> int | None:
    """The step to resume from (None: start afresh), after checking the directory's config.

    Raises:
        ConfigMismatchError: `workdir/config.json` differs from `config` (lists the keys).
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
    if diffs:
        lines = "\n".join(f"  {key}: saved {a!r}, given {b!r}" for key, a, b in diffs)
        raise ConfigMismatchError(
            f"{workdir / checkpoint.CONFIG_FILE} differs from the given config in "
            f"{len(diffs)} key(s):\n{lines}\nUse another --workdir or the saved config."
        )
    return step


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
) -> fit.FitResult | None:
    """Trains `config` in `workdir`, resuming from its newest checkpoint.

    Args:
        config: the resolved config.
        workdir: the run directory.
        progress: show a tqdm bar.
        on_step: extra per-step hook, called after checkpointing (tests use it to stop a run).

    Returns:
        The `fit.FitResult`, or None if the run had already finished (nothing is written then).

    Raises:
        ConfigMismatchError, checkpoint.CheckpointError, ValueError (bad config), TypeError
        (bad target settings): before anything is written.
        run_lock.RunDirectoryBusyError: another process is training in `workdir` (its lock,
            `train.lock`, names it); nothing is written.
    """
    workdir = pathlib.Path(workdir)
    settings = Settings.from_config(config)
    methods.check_method(settings)
    step = check_workdir(workdir, config)
    # A run trains on its own copy of a robot file (robot_snapshot): a resumed one reads it.
    target = targets.from_config(robot_snapshot.use_stored(config, workdir))
    trainer = methods.make_trainer(settings, target)  # its refusals come before any write
    if step is not None and step >= settings.schedule.num_steps:
        print(f"{workdir}: the run is complete ({step} of {settings.schedule.num_steps} steps).")
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    with run_lock.hold(workdir):  # one writer: another training process here fails at once
        return _train_locked(config, settings, workdir, target, trainer, progress, on_step)


def _train_locked(config, settings, workdir, target, trainer, progress, on_step):
    """`train_and_checkpoint` once it holds the directory's lock: the directory is read again
    (a run that finished meanwhile is left as it is), then trained from where it stands."""
    step = check_workdir(workdir, config)
    t = settings.schedule
    state, records = None, fit.RunRecords()
    if step is not None:
        state = checkpoint.restore(workdir, checkpoint.abstract_state(trainer))
        records = fit.RunRecords.from_json(checkpoint.restore_records(workdir, step))
        if step >= t.num_steps:
            print(f"{workdir}: the run is complete ({step} of {t.num_steps} steps).")
            return None
        print(f"{workdir}: resuming from step {step} of {t.num_steps}.")
    if not (workdir / checkpoint.CONFIG_FILE).exists():
        checkpoint.save_config(workdir, config)
    if step is None and robot_snapshot.store(workdir, config) is not None:
        target = targets.from_config(robot_snapshot.use_stored(config, workdir))
        trainer = methods.make_trainer(settings, target)
    writer, log = _make_logger(workdir, config, records, step)

    def hook(report: fit.StepReport) -> None:
        if report.scalars is not None:
            log(report.scalars)
        if report.step % t.checkpoint_every == 0 or report.step == report.num_steps:
            checkpoint.save(
                workdir, report.state, keep=t.keep_checkpoints, records=report.records.to_json()
            )
        if on_step is not None:
            on_step(report)

    try:
        return fit.fit(
            settings,
            target=target,
            trainer=trainer,
            progress=progress,
            initial_state=state,
            records=records,
            on_step=hook,
        )
    finally:
        writer.close()


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    progress: bool = True,
    on_step=None,
    refine_fn=refine.refine,
    latency: bool = True,
) -> tuple[fit.FitResult | None, dict | None]:
    """`train_and_checkpoint`, then the evaluation of the final model on the config's fixed test
    set (`run_report.evaluate_run`): `<workdir>/plots/*.png` and `<workdir>/metrics.json`.

    Args:
        config, workdir, progress, on_step: as `train_and_checkpoint`.
        refine_fn: the LM refinement of the refined-success, MMD and coverage metrics (None:
            skip them).
        latency: also time sampling.

    Returns:
        (the `fit.FitResult`, or None if the run had already finished; the metrics, or None for
        a target without a robot, which the IK evaluation does not apply to).

    Raises:
        As `train_and_checkpoint`, before anything is written.
    """
    result = train_and_checkpoint(config, workdir, progress=progress, on_step=on_step)
    workdir = pathlib.Path(workdir)
    trained = checkpoint.load_model(workdir)
    if not isinstance(trained.target, targets.RobotTarget):
        return result, None
    metrics, _ = run_report.evaluate_run(trained, refine_fn=refine_fn, latency=latency)
    run_report.write_metrics(workdir / run_report.METRICS_FILE, metrics)
    return result, metrics
