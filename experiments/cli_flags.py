"""Command-line helpers shared by the entry points: one config-override syntax, `--config.a.b=v`.

* `parse_flags`: absl's parsing for a `config_flags` config file (experiments/train.py), with a
  clear message for an unknown `--config.` key (absl's own is a KeyError traceback);
* `config_override_parser`: for the entry points that build many configs (compare, seeds,
  latent_scale), `--config.a.b=v` (repeatable) becomes the override "a.b=v" applied to every
  config they build (`avips_jax.presets.apply_overrides`);
* `define_distributed_flags` / `start_distributed`: the multi-process settings of the entry
  points that train (train, compare) and the data-parallel mesh over every process's devices.
"""

import importlib.util
import pathlib
import sys

import jax
import ml_collections
from absl import app, flags
from jax.sharding import Mesh

from avips_jax import distributed


def _load_config_file(spec: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of a "path.py[:arg]" config file (as config_flags loads it)."""
    path, *arg = spec.split(":", 1)
    module_spec = importlib.util.spec_from_file_location("_config_file", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(*arg)


def _missing_key(config: ml_collections.ConfigDict, path: list[str]) -> str | None:
    """Why the dotted `path` is not in `config` (None if it is)."""
    node = config
    for i, name in enumerate(path):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            where = ".".join(path[:i]) or "config"
            known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            return f"{where} has no key {name!r} (keys: {', '.join(known)})"
        node = node[name]
    return None


def _unknown_config_keys(argv: list[str]) -> list[str]:
    """The `--config.a.b=...` overrides whose path is not in the config file's config."""
    args = argv[1:]
    config = _load_config_file(next(a.split("=", 1)[1] for a in args if a.startswith("--config=")))
    problems = []
    for arg in args:
        if arg.startswith("--config."):
            path = arg[len("--config.") :].split("=", 1)[0]
            reason = _missing_key(config, path.split("."))
            if reason is not None:
                problems.append(f"config.{path}: {reason}")
    return problems


CONFIGS_DIR = pathlib.Path(__file__).resolve().parent / "configs"


def resolve_config_file(argv: list[str]) -> list[str]:
    """argv with a `--config=<file>[:arg]` that names no existing file resolved to the packaged
    config of that name, so that `--config=panda.py:quick`, `--config=panda:quick` and the
    checkout's `--config=experiments/configs/panda.py:quick` work from any directory (an
    installed wheel has no experiments/ folder)."""
    out = []
    for arg in argv:
        if arg.startswith("--config="):
            path, sep, rest = arg[len("--config=") :].partition(":")
            name = pathlib.Path(path).name
            packaged = CONFIGS_DIR / (name if name.endswith(".py") else f"{name}.py")
            if path and not pathlib.Path(path).is_file() and packaged.is_file():
                arg = f"--config={packaged}{sep}{rest}"
        out.append(arg)
    return out


def _flag_error_line(err: Exception) -> str:
    """One line for absl's flag error: for a config file that failed to load (config_flags
    wraps the traceback), the exception it ended in, e.g. "--config=panda.py:quik: ValueError:
    unknown preset 'quik'; choose one of quick, full, precise"."""
    message = str(err)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "Error whilst parsing config file" in message and lines:
        flag = lines[0].split(": Error whilst parsing config file", 1)[0].removeprefix("flag ")
        return f"{flag}: {lines[-1]}"
    return lines[0] if lines else message


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with one-line errors (exit code 1): an unknown `--config.` key, a
    config file that fails to load (a mistyped preset); the config file may be named as
    `resolve_config_file` says."""
    argv = resolve_config_file(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:  # e.g. the config file's get_config raised: one line, not a dump
        sys.exit(f"error: {_flag_error_line(err)}")
    except (AttributeError, KeyError) as err:  # raised by config_flags for a missing field
        try:
            problems = _unknown_config_keys(argv)
        except Exception:  # the config itself did not load: report the original error
            problems = []
        sys.exit("error: unknown config key: " + ("; ".join(problems) or str(err)))


CONFIG_PREFIX = "--config."


def split_config_overrides(argv: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """argv without its `--config.a.b=v` arguments, and those as overrides ("a.b=v", ...).

    Raises:
        app.UsageError: for a `--config.` argument without "=value".
    """
    rest, overrides = [], []
    for arg in argv:
        if not arg.startswith(CONFIG_PREFIX):
            rest.append(arg)
            continue
        override = arg[len(CONFIG_PREFIX) :]
        if "=" not in override:
            raise app.UsageError(f"{arg}: a config override needs a value: --config.a.b=value")
        overrides.append(override)
    return rest, tuple(overrides)


def config_override_parser(overrides: list[str]):
    """A `flags_parser` for `app.run` that moves the `--config.a.b=v` arguments into
    `overrides` (cleared first) and parses the rest with absl; a `--config.` argument without
    a value exits with a one-line error (status 1)."""

    def parse(argv: list[str]) -> list[str]:
        try:
            rest, found = split_config_overrides(argv)
        except app.UsageError as err:
            sys.exit(f"error: {err}")
        overrides[:] = found
        return app.parse_flags_with_usage(rest)

    return parse


def define_distributed_flags() -> None:
    """--coordinator_address, --num_processes, --process_id, --distributed."""
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process training: host:port of process 0 (with --num_processes, --process_id).",
    )
    flags.DEFINE_integer("num_processes", None, "Multi-process training: number of processes.")
    flags.DEFINE_integer("process_id", None, "Multi-process training: this process's index.")
    flags.DEFINE_bool(
        "distributed",
        False,
        "Multi-process training with the settings the cluster provides (TPU pod slice, SLURM, "
        "Open MPI: jax.distributed.initialize's auto-detection).",
    )


def start_distributed() -> Mesh | None:
    """Joins the multi-process job the flags of `define_distributed_flags` describe (if any),
    then returns the data-parallel mesh over every device of every process, or None for a
    single device (no mesh: one-device runs stay as they are).

    Raises:
        ValueError: only some of the three explicit settings given.
    """
    explicit = (
        flags.FLAGS.coordinator_address,
        flags.FLAGS.num_processes,
        flags.FLAGS.process_id,
    )
    if flags.FLAGS.distributed or any(v is not None for v in explicit):
        distributed.initialize(*explicit)
    return distributed.data_mesh() if jax.device_count() > 1 else None
