"""Tests of avips_jax.loop with a toy step function (no networks): schedule, hooks, resuming."""

import logging

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from avips_jax import divergence, loop
from avips_jax.config import default_config
from avips_jax.settings import Settings


@flax.struct.dataclass
class _State:
    step: jax.Array
    total: jax.Array  # running sum of every context seen


class _Target:
    def __init__(self, name="toy", bad=False):
        self.name, self.bad = name, bad

    def sample_contexts(self, key, batch):
        c = jax.random.normal(key, (batch, 2))
        return c * jnp.nan if self.bad else c


@jax.jit
def _step(state, contexts):
    total = state.total + jnp.sum(contexts)
    metrics = {
        "loss": total,
        "per_context": jnp.sum(contexts, axis=-1),  # not 0-d: not logged
        "contexts_finite": jnp.all(jnp.isfinite(contexts)),
        "skipped": state.step == 1,  # the second step reports a skipped update
    }
    return _State(step=state.step + 1, total=total), metrics


def _config(num_steps, log_every=2):
    config = default_config()
    config.seed = 3
    config.method = "toy"  # only the progress bar's label: run_loop does not look it up
    config.train.batch_contexts = 4
    config.train.num_steps = num_steps
    config.train.log_every = log_every
    return Settings.from_config(config)


def _fresh():
    return _State(step=jnp.zeros((), jnp.int32), total=jnp.zeros(()))


def _run(config, state, records, step_fn=_step, **kwargs):
    log_scalars = lambda state, contexts, key: {"total": float(state.total)}
    return loop.run_loop(
        config, _Target(), state, step_fn, log_scalars=log_scalars, records=records, **kwargs
    )


def test_logs_on_schedule_and_calls_every_hook():
    reports, logged, seen = [], [], []

    def adapt(state, contexts, key, step):
        seen.append((step, int(state.step)))
        return state, [{"step": step + 1, "event": "added", "slot": 0}] if step == 2 else []

    records = loop.RunRecords()
    state = _run(
        _config(5),
        _fresh(),
        records,
        adapt=adapt,
        progress=False,
        callback=lambda step, scalars: logged.append(step),
        on_step=reports.append,
    )
    assert int(state.step) == 5
    assert [h["step"] for h in records.history] == [2, 4, 5] == logged  # every 2nd and the last
    for h in records.history:
        assert {"loss", "total", "skipped", "steps_per_s", "wall_time_s"} <= set(h)
        assert "per_context" not in h
        assert isinstance(h["loss"], float)
    assert seen == [(t, t + 1) for t in range(5)]  # after every step, on the stepped state
    assert records.events == [{"step": 3, "event": "added", "slot": 0}]
    assert [r.step for r in reports] == [1, 2, 3, 4, 5]
    assert [r.scalars is not None for r in reports] == [False, True, False, True, True]
    assert all(r.num_steps == 5 and r.records is records for r in reports)
    assert records.wall_time_s > 0


def test_resuming_continues_the_uninterrupted_run_exactly():
    full = _run(_config(5), _fresh(), loop.RunRecords(), progress=False)
    records = loop.RunRecords()
    first = _run(_config(3), _fresh(), records, progress=False)
    wall = records.wall_time_s
    resumed = _run(_config(5), first, records, progress=False)
    assert int(resumed.step) == 5
    np.testing.assert_array_equal(resumed.total, full.total)
    assert [h["step"] for h in records.history] == [2, 3, 4, 5]
    assert records.wall_time_s > wall  # the wall time of both sessions


def test_non_finite_contexts_raise_naming_the_target():
    with pytest.raises(divergence.NonFiniteContextError, match="NaN.*'broken'"):
        loop.run_loop(
            _config(2),
            _Target("broken", bad=True),
            _fresh(),
            _step,
            log_scalars=lambda *_: {},
            records=loop.RunRecords(),
            progress=False,
        )


def test_skipped_update_is_logged_as_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="avips_jax.loop"):
        _run(_config(3), _fresh(), loop.RunRecords(), progress=False)
    assert [r.getMessage() for r in caplog.records] == [
        "1 update(s) skipped (non-finite loss, gradient or target): step 2"
    ]


@jax.jit
def _skipping_step(state, contexts):
    """Every update from the third step on is skipped (the state stays finite)."""
    return _State(step=state.step + 1, total=state.total), {"skipped": state.step >= 2}


def test_a_run_of_skipped_updates_is_divergence_naming_the_steps():
    n = divergence.MAX_CONSECUTIVE_SKIPPED
    reports = []
    with pytest.raises(divergence.DivergenceError, match=f"steps 3-{n + 2} were all skipped"):
        _run(
            _config(n + 10, log_every=n + 4),
            _fresh(),
            loop.RunRecords(),
            progress=False,
            step_fn=_skipping_step,
            on_step=reports.append,
        )
    # Stopped at the log step that found it, before its hook (which would checkpoint it).
    assert [r.step for r in reports] == list(range(1, n + 4))


def test_non_finite_state_is_divergence_naming_the_leaf():
    @jax.jit
    def step(state, contexts):
        total = jnp.where(state.step == 2, jnp.inf, state.total)
        return _State(step=state.step + 1, total=total), {}

    with pytest.raises(
        divergence.DivergenceError, match=r"after step 4 .*non-finite values \(in \.total\)"
    ):
        _run(_config(8, log_every=4), _fresh(), loop.RunRecords(), progress=False, step_fn=step)


def test_shard_and_replicate():
    contexts, tree = jnp.ones((4, 2)), {"a": jnp.zeros(3)}
    assert loop.shard_contexts(None, contexts) is contexts
    assert loop.replicate(None, tree) is tree
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    sharded = loop.shard_contexts(mesh, contexts)
    assert isinstance(sharded.sharding, NamedSharding)
    assert sharded.sharding.spec[0] == "data"
    assert loop.replicate(mesh, tree)["a"].sharding.spec == PartitionSpec()
