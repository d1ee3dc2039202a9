"""When a run has gone wrong numerically: a non-finite context batch, updates skipped again and
again, a training state holding NaN or infinity. `loop.run_loop` checks on its log steps;
`checkpoint` never saves, and never loads into a model, a non-finite state.
"""

import logging
from typing import Any

import jax

from avips_jax import pytree, targets

logger = logging.getLogger(__name__)


class NonFiniteContextError(ValueError):
    """A context of the batch is NaN or infinite."""


class DivergenceError(RuntimeError):
    """The run diverged: its state became non-finite, or its updates kept being skipped (more
    than `MAX_CONSECUTIVE_SKIPPED` in a row) for a non-finite loss, gradient or target."""


# The step guard skips an update whose loss, gradient or target is not finite and leaves the
# state as it was; a run whose updates are skipped this many times in a row makes no progress
# any more (e.g. a learning rate that threw the parameters far out), so it is stopped.
MAX_CONSECUTIVE_SKIPPED = 50


def check_step_flags(
    flags: list[tuple[int, tuple]], target: targets.Target, skipped_in_a_row: int
) -> int:
    """Reads the flags of the steps since the last check in one transfer (reading them every step
    would block async dispatch): raises for the first non-finite context batch and for a run of
    `MAX_CONSECUTIVE_SKIPPED` skipped updates, warns about each skipped (non-finite) update.
    Returns the number of updates skipped in a row up to the last of these steps."""
    skipped_steps = []
    for step, (contexts_finite, skipped) in jax.device_get(flags):
        if not contexts_finite:
            raise NonFiniteContextError(
                f"step {step}: the context batch contains NaN or inf values "
                f"(target {target.name!r}); fix the context source."
            )
        skipped_in_a_row = skipped_in_a_row + 1 if skipped else 0
        if skipped:
            skipped_steps.append(step + 1)
        if skipped_in_a_row >= MAX_CONSECUTIVE_SKIPPED:
            first = step + 2 - skipped_in_a_row
            raise DivergenceError(
                f"the run diverged: the updates of steps {first}-{step + 1} were all skipped "
                "(non-finite loss, gradient or target); lower the learning rates "
                "(train.component_lr, train.gate_lr) or add gradient clipping (train.grad_clip)"
            )
    if skipped_steps:
        shown = ", ".join(map(str, skipped_steps[:5])) + (", ..." if len(skipped_steps) > 5 else "")
        logger.warning(
            "%d update(s) skipped (non-finite loss, gradient or target): step %s",
            len(skipped_steps),
            shown,
        )
    return skipped_in_a_row


def nonfinite_leaves(state: Any) -> list[str]:
    """Paths of the leaves of the state's parameters and optimiser state (`params`, `opt_state`;
    every leaf for a state without them) that hold a NaN or an infinity. Other fields may hold
    them by design (e.g. the trust region's NaN = no history)."""
    if hasattr(state, "params") and hasattr(state, "opt_state"):
        state = {"params": state.params, "opt_state": state.opt_state}
    return pytree.nonfinite_paths(state)


def check_finite_state(state: Any, step: int) -> None:
    """DivergenceError naming the leaves of the state's parameters or optimiser state that hold a
    NaN or an infinity after `step` train steps (`nonfinite_leaves`)."""
    bad = nonfinite_leaves(state)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DivergenceError(
            f"the run diverged: after step {step} the training state holds non-finite values "
            f"(in {shown}); lower the learning rates (train.component_lr, train.gate_lr) or add "
            "gradient clipping (train.grad_clip)"
        )
