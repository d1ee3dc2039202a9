"""Where one slot of a `networks.ConditionalGMM` lives in its variables: read, write and mask it.

The network keeps its K slots in stacked arrays: every leaf under params["components"] has the
slot axis first (per_component: the slot's hidden layers and heads; shared_trunk: its heads),
the gate head has one column per slot (kernel (H_g, K), bias (K,)), and the "slots" collection
holds three per-slot offsets (mean pre-activation (K, d), Cholesky-diagonal raw value (K, d),
logit (K,)). Component adding, merging and the optimiser reset edit one slot at a time through
this module, so that no other module walks the parameter tree by name:

    s = slot_layout.read(variables, k)                   # SlotParams of slot k
    s = s.with_mean_head(kernel, bias).replace(mean_offset=offset)
    variables = slot_layout.write(variables, k, s)
    mask = slot_layout.slot_mask(params, slots)          # bool pytree like params
"""

from typing import Any

import chex
import flax
import jax
import jax.numpy as jnp

from avips_jax import networks

_PARAMS = "params"


@flax.struct.dataclass
class SlotParams:
    """One slot's share of the variables.

    Attributes:
        component: the slot's `networks.ComponentNet` parameters (apply them with
            `component_net(module)`; per_component: hidden layers and heads, shared_trunk: heads).
        gate_kernel: (H_g,) the slot's column of the gate head's kernel.
        gate_bias: () the slot's entry of the gate head's bias.
        mean_offset: (d,) added to the mean head's output (pre-activation).
        diag_offset: (d,) added to the Cholesky-diagonal head's raw output.
        logit_offset: () added to the slot's logit.
    """

    component: dict
    gate_kernel: chex.Array
    gate_bias: chex.Array
    mean_offset: chex.Array
    diag_offset: chex.Array
    logit_offset: chex.Array

    def with_mean_head(self, kernel: chex.Array, bias: chex.Array) -> "SlotParams":
        """The mean head set to kernel (H, d), bias (d,)."""
        head = {**self.component[networks.MEAN_HEAD], "kernel": kernel, "bias": bias}
        return self.replace(component={**self.component, networks.MEAN_HEAD: head})

    def with_zero_covariance_heads(self) -> "SlotParams":
        """The Cholesky heads (diagonal and off-diagonal) set to zero: the slot's Cholesky
        factor no longer depends on the context and is set by `diag_offset` alone."""
        component = dict(self.component)
        for name in (networks.DIAG_HEAD, networks.OFFDIAG_HEAD):
            if name in component:
                component[name] = jax.tree.map(jnp.zeros_like, component[name])
        return self.replace(component=component)


def component_net(module: networks.ConditionalGMM) -> networks.ComponentNet:
    """The network of one slot, to apply to `SlotParams.component` (per_component models: it
    maps contexts to (features, mean_raw, diag_raw, offdiag_raw))."""
    hidden = tuple(module.component_hidden) if module.architecture == "per_component" else ()
    return networks.ComponentNet(module.dim, hidden, module.activation)


def read(variables: dict, slot: chex.Array) -> SlotParams:
    """The `SlotParams` of `slot` (() int) in variables {"params": ..., "slots": ...}."""
    params, offsets = variables[_PARAMS], variables[networks.SLOTS]
    gate = params[networks.GATE][networks.GATE_HEAD]
    return SlotParams(
        component=jax.tree.map(
            lambda leaf: jnp.take(leaf, slot, axis=0), params[networks.COMPONENTS]
        ),
        gate_kernel=jnp.take(gate["kernel"], slot, axis=1),
        gate_bias=jnp.take(gate["bias"], slot),
        mean_offset=jnp.take(offsets[networks.MEAN_OFFSET], slot, axis=0),
        diag_offset=jnp.take(offsets[networks.DIAG_OFFSET], slot, axis=0),
        logit_offset=jnp.take(offsets[networks.LOGIT_OFFSET], slot),
    )


def _put(leaf: chex.Array, slot: chex.Array, value: chex.Array, axis: int = 0) -> chex.Array:
    index = (slice(None),) * axis + (slot,)
    return leaf.at[index].set(jnp.asarray(value).astype(leaf.dtype))


def write(variables: dict, slot: chex.Array, new: SlotParams) -> dict:
    """variables with `slot` (() int) replaced by `new` (every other slot unchanged)."""
    params, offsets = variables[_PARAMS], variables[networks.SLOTS]
    gate = params[networks.GATE]
    head = gate[networks.GATE_HEAD]
    components = jax.tree.map(
        lambda leaf, value: _put(leaf, slot, value), params[networks.COMPONENTS], new.component
    )
    head = {
        **head,
        "kernel": _put(head["kernel"], slot, new.gate_kernel, axis=1),
        "bias": _put(head["bias"], slot, new.gate_bias),
    }
    params = {
        **params,
        networks.COMPONENTS: components,
        networks.GATE: {**gate, networks.GATE_HEAD: head},
    }
    offsets = {
        **offsets,
        networks.MEAN_OFFSET: _put(offsets[networks.MEAN_OFFSET], slot, new.mean_offset),
        networks.DIAG_OFFSET: _put(offsets[networks.DIAG_OFFSET], slot, new.diag_offset),
        networks.LOGIT_OFFSET: _put(offsets[networks.LOGIT_OFFSET], slot, new.logit_offset),
    }
    return {**variables, _PARAMS: params, networks.SLOTS: offsets}


def num_slots(params: dict) -> int:
    """K, the number of slots of a ConditionalGMM's params."""
    return int(params[networks.GATE][networks.GATE_HEAD]["bias"].shape[0])


def add_to_logit_offsets(offsets: dict, delta: chex.Array) -> dict:
    """The "slots" collection with `delta` (K,) added to the logit offsets (merging moves a
    removed slot's weight to its partner this way)."""
    return {**offsets, networks.LOGIT_OFFSET: offsets[networks.LOGIT_OFFSET] + delta}


def gate_mask(params: dict, slots: chex.Array) -> Any:
    """Bool pytree like `params`: True on the gate head's column (kernel) and entry (bias) of
    every slot where `slots` (K,) bool is True, False everywhere else."""
    mask = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, bool), params)
    head = params[networks.GATE][networks.GATE_HEAD]
    mask[networks.GATE] = {
        **mask[networks.GATE],
        networks.GATE_HEAD: {
            "kernel": jnp.broadcast_to(slots, head["kernel"].shape),
            "bias": jnp.broadcast_to(slots, head["bias"].shape),
        },
    }
    return mask


def slot_mask(params: dict, slots: chex.Array) -> Any:
    """Bool pytree like `params`: True on every entry that belongs to a slot where `slots` (K,)
    bool is True (its component parameters and its gate-head column), False elsewhere."""
    slots = jnp.asarray(slots, bool)

    def component_mask(leaf):
        return jnp.broadcast_to(slots.reshape((-1,) + (1,) * (leaf.ndim - 1)), leaf.shape)

    mask = gate_mask(params, slots)
    mask[networks.COMPONENTS] = jax.tree.map(component_mask, params[networks.COMPONENTS])
    return mask
