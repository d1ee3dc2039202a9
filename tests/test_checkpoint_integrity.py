"""checkpoint_integrity: per-file checksums and the state digest, on hand-made step directories
(tests/test_checkpoint.py and tests/test_faults.py damage real checkpoints)."""

import json

import numpy as np
import pytest

from avips_jax import checkpoint_integrity as integrity


def _step_dir(tmp_path):
    step = tmp_path / "7"
    (step / "state").mkdir(parents=True)
    (step / "state" / "data").write_bytes(b"\x00\x01\x02\x03" * 8)
    (step / "records").write_text('{"events": []}')
    (step / integrity.FILE_CHECKSUMS).write_text(integrity.checksums_json(step))
    return step


def test_intact_files_verify_and_a_directory_without_checksums_is_unverified(tmp_path):
    step = _step_dir(tmp_path)
    assert set(json.loads((step / integrity.FILE_CHECKSUMS).read_text())) == {
        "records",
        "state/data",
    }
    assert integrity.verify_files(step) is True
    (step / integrity.FILE_CHECKSUMS).unlink()
    assert integrity.verify_files(step) is False


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: (s / "state" / "data").write_bytes(b"\x00\x01\x02\x04" * 8), "state/data does"),
        (lambda s: (s / "state" / "data").write_bytes(b"\x00"), "state/data does not match"),
        (lambda s: (s / "records").unlink(), "records is missing"),
        (lambda s: (s / integrity.FILE_CHECKSUMS).write_text("{not json"), "files.sha256.json"),
    ],
    ids=["flipped bit", "truncated", "missing", "garbled checksums"],
)
def test_damage_is_named_in_one_line(tmp_path, damage, message):
    step = _step_dir(tmp_path)
    damage(step)
    with pytest.raises(integrity.CorruptCheckpointError, match=message) as err:
        integrity.verify_files(step)
    assert str(step) in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, integrity.CheckpointError)


def test_digest_sees_every_value_dtype_shape_path_and_record(tmp_path):
    state = {"a": np.arange(4.0, dtype=np.float32), "b": np.zeros((2, 2), np.int32)}
    records = {"events": [{"step": 3, "event": "added"}]}
    base = integrity.digest(state, records)
    assert base == integrity.digest({k: v.copy() for k, v in state.items()}, dict(records))
    flipped = state["a"].copy()
    flipped.view(np.uint32)[2] ^= 1  # one bit of one float
    variants = [
        ({**state, "a": flipped}, records),
        ({**state, "a": state["a"].astype(np.float64)}, records),
        ({**state, "b": state["b"].reshape(4)}, records),
        ({"a2": state["a"], "b": state["b"]}, records),
        (state, {"events": []}),
    ]
    digests = {integrity.digest(s, r) for s, r in variants}
    assert base not in digests and len(digests) == len(variants)
    integrity.check_digest(tmp_path, base, state, records)
    with pytest.raises(integrity.CorruptCheckpointError, match="does not match the checksum"):
        integrity.check_digest(tmp_path, base, {**state, "a": flipped}, records)
    with pytest.raises(integrity.CorruptCheckpointError):
        integrity.check_digest(tmp_path, None, state, records)


def test_first_line_keeps_the_type_and_one_short_line():
    err = OSError("first line\nTensorStore says\nmore")
    assert integrity.first_line(err) == "OSError: first line"
    assert integrity.first_line(ValueError("")) == "ValueError"
    long = integrity.first_line(RuntimeError("x" * 500), limit=50)
    assert long.startswith("RuntimeError: ") and long.endswith("...") and len(long) < 70
