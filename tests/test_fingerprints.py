"""Same config and seed -> the same trained model as recorded in tests/fingerprints.json
(`tests.fingerprints`), for aVIPS and every baseline: the guard of a refactor that must not change
behaviour. Slow (every method compiles and trains); re-record with
`python -m tests.fingerprints --write` only where a change is meant to change the numbers."""

import json

import numpy as np
import pytest

from avips_jax import presets
from tests import fingerprints

pytestmark = pytest.mark.slow


def test_every_method_has_a_fingerprint():
    recorded = json.loads(fingerprints.PATH.read_text())
    assert sorted(recorded) == sorted(fingerprints.OVERRIDES) == sorted(presets.METHODS)


@pytest.mark.parametrize("method", sorted(fingerprints.OVERRIDES))
def test_fingerprint_is_unchanged(method, fast_compiles):
    recorded = json.loads(fingerprints.PATH.read_text())[method]
    now = fingerprints.fingerprint(method)
    assert (now["log_prob"] is None) == (recorded["log_prob"] is None)
    for name, value in recorded.items():
        if value is not None:
            np.testing.assert_allclose(now[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
