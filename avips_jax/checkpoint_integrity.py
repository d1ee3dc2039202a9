"""Integrity of saved checkpoints: the errors of a checkpoint that cannot be read, the SHA-256 of
every file of a step directory, and the digest of the saved state.

Two layers, both checked by every restore (`avips_jax.checkpoint`):
- `FILE_CHECKSUMS` (`files.sha256.json`), the SHA-256 of every file of the step directory,
  written once orbax has finished; `verify_files` checks it before orbax reads anything, so
  flipped bits, truncated or missing files are named in one line, without TensorStore's output;
- `digest`, a SHA-256 over the state's arrays (path, dtype, shape and bytes of each leaf) and
  the records, computed before writing and saved by orbax atomically with them; the restore
  recomputes it from what it read (`check_digest`). It covers a save killed before its checksum
  file was written, and damage orbax reads without an error (a flipped bit in a data file).
"""

import hashlib
import json
import pathlib
from typing import Any

import jax
import numpy as np

FILE_CHECKSUMS = "files.sha256.json"


class CheckpointError(ValueError):
    """A checkpoint or config file exists but cannot be read (corrupt, or from another config)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files are damaged: unreadable, or their content does not match the digest
    written with them."""


def file_checksums(step_dir: pathlib.Path) -> dict[str, str]:
    """SHA-256 (hex) of every file under `step_dir` (but the checksum file), by relative path."""
    return {
        str(path.relative_to(step_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(step_dir.rglob("*"))
        if path.is_file() and path.name != FILE_CHECKSUMS
    }


def checksums_json(step_dir: pathlib.Path) -> str:
    """The text of `step_dir`'s `FILE_CHECKSUMS` file."""
    return json.dumps(file_checksums(step_dir), indent=0)


def verify_files(step_dir: pathlib.Path) -> bool:
    """CorruptCheckpointError naming the first file under `step_dir` that is missing or differs
    from the checksum written after the save. Returns whether the files were verified (False:
    the checkpoint has no checksum file, as those written before it existed)."""
    path = step_dir / FILE_CHECKSUMS
    if not path.is_file():
        return False
    try:
        expected = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptCheckpointError(
            f"checkpoint {step_dir} is damaged: {path.name}: {err}"
        ) from err
    for name, digest_hex in expected.items():
        file = step_dir / name
        if not file.is_file():
            raise CorruptCheckpointError(f"checkpoint {step_dir} is damaged: {name} is missing")
        if hashlib.sha256(file.read_bytes()).hexdigest() != digest_hex:
            raise CorruptCheckpointError(
                f"checkpoint {step_dir} is damaged: {name} does not match the checksum written "
                "with it"
            )
    return True


def digest(state: Any, records: dict[str, Any]) -> str:
    """SHA-256 (hex) over every leaf of `state` (its path, dtype, shape and bytes, in tree order)
    and the canonical JSON of `records`."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    h.update(json.dumps(records, sort_keys=True).encode())
    return h.hexdigest()


def check_digest(step_dir: pathlib.Path, saved: str | None, state: Any, records: dict) -> None:
    """CorruptCheckpointError unless `saved` (the digest written with the checkpoint in
    `step_dir`) is the `digest` of what was read back."""
    if saved != digest(state, records):
        raise CorruptCheckpointError(
            f"checkpoint {step_dir} is damaged: its content does not match the checksum "
            "written with it"
        )


def first_line(err: BaseException, limit: int = 200) -> str:
    """`Type: message` of `err` on one line (TensorStore messages run over many)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
