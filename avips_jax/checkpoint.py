"""Run directories: the resolved config, orbax checkpoints of the TrainState, and loading a model.

    checkpoint.save_config(workdir, config)            # <workdir>/config.json
    checkpoint.save(workdir, state, records={...})     # <workdir>/checkpoints/<step>/
    step = checkpoint.latest_step(workdir)             # None if there is none
    state = checkpoint.restore(workdir, like_state)    # the latest step by default
    run = checkpoint.load_model(workdir)               # run.model.sample(key, contexts, n)

Layout of a run directory: `config.json` (the resolved config), `checkpoints/<step>/` (orbax: the
whole TrainState as item "state" plus a JSON item "records" with the loop's host-side bookkeeping),
`tensorboard/`, `history.jsonl` (the logged scalars), later `metrics.json` and `plots/*.png`.

Atomicity: orbax writes a step into `<step>.orbax-checkpoint-tmp*` and renames it when complete;
such temporary directories, and any step directory that lacks one of the files a finished save
writes, are never taken for a checkpoint.

Integrity, checked by every restore (`CorruptCheckpointError`, one line naming the checkpoint):
`files.sha256.json`, the SHA-256 of every file of the step directory, and the item "digest" over
the state's arrays and the records (`avips_jax.checkpoint_integrity`). Checkpoints written before
these existed load unverified. A state holding NaN or infinity is
never saved (`divergence.DivergenceError`), and `load_model` refuses one.
"""

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from avips_jax import checkpoint_integrity as integrity
from avips_jax import distributed, divergence, methods, robot_snapshot, targets, train
from avips_jax.checkpoint_integrity import CheckpointError, CorruptCheckpointError
from avips_jax.config import thesis_config
from avips_jax.settings import Settings

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
_STATE, _RECORDS, _DIGEST = "state", "records", "digest"
# Files every finished save writes (relative to the step directory).
_COMPLETE_MARKERS = ("_CHECKPOINT_METADATA", f"{_STATE}/_METADATA", _RECORDS)


class CheckpointNotFoundError(FileNotFoundError):
    """The run directory has no checkpoint (or no config) where one is needed."""


@dataclasses.dataclass
class TrainedRun:
    """A trained model loaded from a run directory.

    Attributes:
        config: the run's resolved config.
        target: the target built from `config.target`.
        model: the trained model at `step` (`model.AmortizedGMM`, or a baseline's model).
        state: the full training state at `step`.
        step: the checkpoint's step (train steps taken).
        workdir: the run directory.
    """

    config: ml_collections.ConfigDict
    target: targets.Target
    model: Any
    state: train.TrainState
    step: int
    workdir: pathlib.Path


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
    """`<workdir>/checkpoints`, as an absolute path (orbax needs one)."""
    return pathlib.Path(workdir).absolute() / CHECKPOINT_DIR


def _manager(workdir, keep: int):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
    return ocp.CheckpointManager(
        checkpoint_dir(workdir), options=options, item_names=(_STATE, _RECORDS, _DIGEST)
    )


def _is_complete(step_dir: pathlib.Path) -> bool:
    return all((step_dir / name).exists() for name in _COMPLETE_MARKERS)


def all_steps(workdir: str | os.PathLike) -> list[int]:
    """Steps of the complete checkpoints in `workdir`, ascending (temporary or partial ones are
    skipped with a warning)."""
    root = checkpoint_dir(workdir)
    if not root.is_dir():
        return []
    steps = []
    for path in root.iterdir():
        if not (path.is_dir() and path.name.isdigit()):
            continue  # orbax temporaries are named "<step>.orbax-checkpoint-tmp..."
        if _is_complete(path):
            steps.append(int(path.name))
        else:
            logger.warning("ignoring incomplete checkpoint directory %s", path)
    return sorted(steps)


def _remove_leftovers(root: pathlib.Path) -> None:
    """Deletes what killed saves leave in `root`: orbax temporaries and incomplete step dirs."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        temporary = ".orbax-checkpoint-tmp" in path.name
        if path.is_dir() and (temporary or (path.name.isdigit() and not _is_complete(path))):
            logger.warning("removing the leftover of an unfinished save: %s", path)
            shutil.rmtree(path)


def latest_step(workdir: str | os.PathLike) -> int | None:
    """The newest complete checkpoint's step, or None if `workdir` has none."""
    steps = all_steps(workdir)
    return steps[-1] if steps else None


def save(
    workdir: str | os.PathLike,
    state: train.TrainState,
    *,
    keep: int = 3,
    records: dict[str, Any] | None = None,
) -> int:
    """Writes `state` (and JSON `records`) as checkpoint `int(state.step)`, atomically.

    Args:
        workdir: the run directory (created if missing).
        state: the TrainState to save; its `step` names the checkpoint.
        keep: how many of the newest checkpoints to keep (older ones are deleted).
        records: JSON-serialisable host-side bookkeeping (history, events, ...).

    Returns:
        The step saved.

    Raises:
        ValueError: if a checkpoint of that step exists already or keep < 1.
        divergence.DivergenceError: `state` holds a NaN or an infinity (nothing is written).
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    step = int(state.step)
    divergence.check_finite_state(state, step)
    path = checkpoint_dir(workdir) / str(step)
    if path.exists() and _is_complete(path):
        raise ValueError(f"checkpoint {path} exists already")
    if distributed.is_writer():
        _remove_leftovers(checkpoint_dir(workdir))
    mngr = _manager(workdir, keep)
    try:
        mngr.save(
            step,
            args=ocp.args.Composite(
                **{
                    _STATE: ocp.args.StandardSave(state),
                    _RECORDS: ocp.args.JsonSave(records or {}),
                    _DIGEST: ocp.args.JsonSave({"sha256": integrity.digest(state, records or {})}),
                }
            ),
        )
        mngr.wait_until_finished()
    finally:
        mngr.close()
    if distributed.is_writer():
        step_dir = checkpoint_dir(workdir) / str(step)
        write_atomic(
            step_dir / integrity.FILE_CHECKSUMS,
            integrity.checksums_json(step_dir),
        )
    distributed.barrier(f"avips_jax.checkpoint.save.{step}")
    return step


def _step_to_restore(workdir, step: int | None) -> int:
    steps = all_steps(workdir)
    if not steps:
        raise CheckpointNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointNotFoundError(
            f"no checkpoint of step {step} in {checkpoint_dir(workdir)}; available: {steps}"
        )
    return step


def _checkpointer() -> ocp.Checkpointer:
    handler = ocp.CompositeCheckpointHandler(
        **{
            _STATE: ocp.StandardCheckpointHandler(),
            _RECORDS: ocp.JsonCheckpointHandler(),
            _DIGEST: ocp.JsonCheckpointHandler(),
        }
    )
    return ocp.Checkpointer(handler)


def _check_fits(checkpointer, path: pathlib.Path, like_state) -> None:
    """CheckpointError unless the saved state has the leaves, shapes and dtypes of like_state
    (checked on the metadata, before orbax reads any array)."""
    meta = checkpointer.metadata(path).item_metadata[_STATE]
    saved = ocp.tree.to_flat_dict(meta)
    wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(like_state, keep_empty_nodes=True))
    if set(saved) != set(wanted):
        extra = sorted("/".join(map(str, k)) for k in set(saved) - set(wanted))
        missing = sorted("/".join(map(str, k)) for k in set(wanted) - set(saved))
        raise CheckpointError(
            f"checkpoint {path} does not fit this config: only in the checkpoint {extra[:5]}, "
            f"only in the config {missing[:5]}"
        )
    for key in sorted(wanted):
        a, b = saved[key], wanted[key]
        if tuple(a.shape) != tuple(b.shape) or np.dtype(a.dtype) != np.dtype(b.dtype):
            raise CheckpointError(
                f"checkpoint {path} does not fit this config: {'/'.join(map(str, key))} is "
                f"{tuple(a.shape)} {a.dtype} there, the config needs {tuple(b.shape)} {b.dtype}"
            )


def _restore_items(workdir, step: int | None, like_state) -> tuple[int, Any, dict]:
    """(step, state or None, records) of a checkpoint; with `like_state`, the state is restored
    and checked against the checkpoint's digest (where it has one)."""
    step = _step_to_restore(workdir, step)
    path = checkpoint_dir(workdir) / str(step)
    checkpointer = _checkpointer()
    args = {_RECORDS: ocp.args.JsonRestore()}
    if like_state is not None:
        args[_STATE] = ocp.args.StandardRestore(like_state)
        if (path / _DIGEST).exists():
            args[_DIGEST] = ocp.args.JsonRestore()
    try:
        verified = integrity.verify_files(path)
        if like_state is not None:
            _check_fits(checkpointer, path, like_state)
        items = checkpointer.restore(path, args=ocp.args.Composite(**args))
    except CheckpointError:
        raise
    except Exception as err:  # orbax / tensorstore raise many types for damaged files
        if verified:  # its files are as written: not damage, so never set aside as damaged
            raise CheckpointError(
                f"cannot restore checkpoint {path} ({integrity.first_line(err)})"
            ) from err
        raise CorruptCheckpointError(
            f"checkpoint {path} is damaged and cannot be read ({integrity.first_line(err)})"
        ) from err
    finally:
        checkpointer.close()
    records = dict(items[_RECORDS] or {})
    state = items[_STATE] if like_state is not None else None
    if _DIGEST in args:
        integrity.check_digest(path, dict(items[_DIGEST] or {}).get("sha256"), state, records)
    return step, state, records


def restore(
    workdir: str | os.PathLike, like_state: train.TrainState, step: int | None = None
) -> train.TrainState:
    """Reads a TrainState saved by `save`, verified against its digest.

    Args:
        workdir: the run directory.
        like_state: a TrainState (concrete or `jax.eval_shape` abstract) with the structure, shapes
            and dtypes of the saved one (built from the same config).
        step: which checkpoint; default the latest complete one.

    Raises:
        CheckpointNotFoundError: no (such) checkpoint.
        CorruptCheckpointError: the files are damaged (unreadable, or not what was written).
        CheckpointError: the checkpoint does not fit `like_state`.
    """
    return _restore_items(workdir, step, like_state)[1]


def restore_with_records(
    workdir: str | os.PathLike, like_state: train.TrainState, step: int | None = None
) -> tuple[int, train.TrainState, dict[str, Any]]:
    """(step, state, records) of one checkpoint, both verified against its digest (errors as
    `restore`)."""
    return _restore_items(workdir, step, like_state)


def restore_records(workdir: str | os.PathLike, step: int | None = None) -> dict[str, Any]:
    """The JSON `records` saved with a checkpoint, unverified (same errors as `restore`)."""
    return _restore_items(workdir, step, None)[2]


def write_atomic(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file renamed over it (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON data (tuples become lists)."""
    return json.loads(config.to_json())


def save_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> pathlib.Path:
    """Writes `<workdir>/config.json` atomically and returns its path."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    write_atomic(path, json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n")
    return path


def _tuples(value):
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):  # configs hold sequences as tuples (hashable module fields)
        return tuple(_tuples(v) for v in value)
    return value


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """Reads `<workdir>/config.json` (JSON lists come back as tuples).

    Keys of `config.thesis_config()` (and, for a baseline, of its `default_baseline_config`)
    that the file lacks (options added to the code after the run was written) take their
    values there: by convention a new option's thesis value keeps the behaviour the code had
    before it, so an older run loads, resumes and compares as it was.

    Raises:
        CheckpointNotFoundError: if the file does not exist.
        CheckpointError: if it is not a JSON object.
    """
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointNotFoundError(f"no config file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"corrupt config file {path}: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"corrupt config file {path}: not a JSON object")
    return ml_collections.ConfigDict(_tuples(_with_defaults(data, _defaults_for(data))))


def _defaults_for(data: dict) -> dict:
    """thesis_config(), with the `baseline` section of data's method where it is a baseline."""
    defaults = config_to_dict(thesis_config())
    method = data.get("method")
    if isinstance(method, str):
        for name, section in methods.extra_sections(method).items():
            defaults[name] = config_to_dict(section)
    return defaults


def _with_defaults(data: dict, defaults: dict) -> dict:
    """`data` with the keys it lacks (recursively, within sections present in both) from
    `defaults`."""
    out = dict(data)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict) and key != "kwargs":
            out[key] = _with_defaults(out[key], value)  # (a target's kwargs are its own)
    return out


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(
    a: ml_collections.ConfigDict, b: ml_collections.ConfigDict
) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ, as (key, value in a, value in b), sorted by key.

    A key missing on one side has the value `None` there. Tuples and lists compare equal.
    """
    fa, fb = _flatten(config_to_dict(a)), _flatten(config_to_dict(b))
    return [
        (key, fa.get(key), fb.get(key))
        for key in sorted(set(fa) | set(fb))
        if fa.get(key) != fb.get(key) or (key in fa) != (key in fb)
    ]


def abstract_state(trainer, mesh=None) -> Any:
    """Shapes and dtypes (no values) of `trainer.init`'s state: what `restore` fills; with a
    `mesh`, each leaf replicated over it (what a data-parallel run trains on)."""
    shapes = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    # Always a sharding of this process's devices: a checkpoint saved on other devices (a
    # data-parallel or multi-process run) then restores here too.
    sharding = (
        SingleDeviceSharding(jax.local_devices()[0])
        if mesh is None
        else NamedSharding(mesh, PartitionSpec())
    )
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def load_model(workdir: str | os.PathLike, step: int | None = None) -> TrainedRun:
    """Rebuilds the target and network from `<workdir>/config.json` and restores a checkpoint.

    Args:
        workdir: a run directory written by `experiments/train.py`.
        step: which checkpoint; default the latest.

    Raises:
        CheckpointNotFoundError: no config or no (such) checkpoint.
        CorruptCheckpointError: damaged files.
        CheckpointError: a checkpoint that does not fit the config, or whose parameters hold NaN
            or infinity (a run that diverged before it was saved).
    """
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise CheckpointNotFoundError(f"run directory {workdir} does not exist")
    config = load_config(workdir)
    settings = Settings.from_config(config)
    methods.check_method(settings)
    target = targets.from_config(robot_snapshot.use_stored(config, workdir))
    trainer = methods.make_trainer(settings, target)
    state = restore(workdir, abstract_state(trainer), step)
    bad = divergence.nonfinite_leaves(state)
    if bad:
        raise CheckpointError(
            f"checkpoint {checkpoint_dir(workdir) / str(int(state.step))} holds non-finite values "
            f"(in {', '.join(bad[:3])}): the run had diverged; load an earlier step "
            f"(available: {all_steps(workdir)})"
        )
    model = trainer.model(state)
    return TrainedRun(
        config=config,
        target=target,
        model=model,
        state=state,
        step=int(state.step),
        workdir=workdir,
    )
