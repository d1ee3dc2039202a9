"""A run directory's own copy of the robot file it trains on, so that the run stays loadable and
unchanged when the original moves or is edited.

    <workdir>/robot/<file name>    the bytes the run was trained on
    <workdir>/robot/robot.json     {"original": absolute path, "sha256": of those bytes, "file"}

`store` writes them when a run starts; `use_stored` gives the config whose target reads the copy
(training, resuming, loading, evaluating and solving all do), and reports (logs a warning) when the
original has changed or gone since: the copy is used, never the edited file. Only IK targets on a
robot file have one (a registered robot name is part of the package).
"""

import hashlib
import json
import logging
import pathlib
import shutil

import ml_collections

from avips_jax.kinematics import robots

logger = logging.getLogger(__name__)

ROBOT_DIR = "robot"
MANIFEST = "robot.json"

__all__ = ["ROBOT_DIR", "MANIFEST", "robot_file", "sha256", "store", "use_stored"]


def robot_file(config: ml_collections.ConfigDict) -> pathlib.Path | None:
    """The robot file the config's target reads (IK on a file), or None."""
    if config.target.name != "ik":
        return None
    name = config.target.kwargs.get("robot_name", "panda")
    return None if robots.is_registered(name) else pathlib.Path(name)


def sha256(path: pathlib.Path) -> str:
    """Hex SHA-256 of the file's bytes."""
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def store(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> pathlib.Path | None:
    """Copies the config's robot file into `<workdir>/robot/` with its manifest (atomically, once:
    an existing copy is kept). Returns the copy, or None for a target without a robot file."""
    original = robot_file(config)
    if original is None:
        return None
    folder = pathlib.Path(workdir) / ROBOT_DIR
    if (folder / MANIFEST).is_file():
        return folder / json.loads((folder / MANIFEST).read_text())["file"]
    tmp = folder.with_name(f".{ROBOT_DIR}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(original, tmp / original.name)
    manifest = {
        "original": str(original.absolute()),
        "sha256": sha256(tmp / original.name),
        "file": original.name,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.rename(folder)
    return folder / original.name


def use_stored(
    config: ml_collections.ConfigDict, workdir: pathlib.Path
) -> ml_collections.ConfigDict:
    """`config` with its target reading the run's copy of the robot file (unchanged where the run
    has none). Logs a warning naming the original when it changed or disappeared since the run
    stored it.

    Raises:
        FileNotFoundError: the manifest names a copy that is missing (a damaged run directory).
    """
    folder = pathlib.Path(workdir) / ROBOT_DIR
    if robot_file(config) is None or not (folder / MANIFEST).is_file():
        return config
    manifest = json.loads((folder / MANIFEST).read_text())
    copy = folder / manifest["file"]
    if not copy.is_file():
        raise FileNotFoundError(f"{workdir}: the run's robot file {copy} is missing")
    if sha256(copy) != manifest["sha256"]:
        raise ValueError(f"{workdir}: the run's robot file {copy} does not match its sha256")
    original = pathlib.Path(manifest["original"])
    if not original.is_file():
        logger.warning(
            "%s: the robot file %s is gone; using the run's copy %s", workdir, original, copy
        )
    elif (now := sha256(original)) != manifest["sha256"]:
        logger.warning(
            "%s: the robot file %s has changed since the run started (sha256 %s, was %s); "
            "using the run's copy %s, as trained",
            workdir,
            original,
            now[:12],
            manifest["sha256"][:12],
            copy,
        )
    stored = config.copy_and_resolve_references()
    stored.target.kwargs.robot_name = str(copy.absolute())
    return stored
