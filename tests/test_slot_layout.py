"""slot_layout: one slot of a ConditionalGMM read, written and masked, every other slot intact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import networks, slot_layout

K, D, DC, B = 5, 3, 2, 6


def _net(arch):
    module = networks.make_gmm_network(
        K, D, -np.ones(D), np.ones(D), architecture=arch, component_hidden=(8,), gate_hidden=(4,)
    )
    variables = networks.init_gmm_network(jax.random.key(0), module, DC)
    contexts = jax.random.uniform(jax.random.key(1), (B, DC), minval=-1.0, maxval=1.0)
    return module, variables, contexts


def _changed_slots(module, before, after, contexts):
    a, b = module.apply(before, contexts), module.apply(after, contexts)
    return [
        k
        for k in range(K)
        if not (
            np.array_equal(a.means[:, k], b.means[:, k])
            and np.array_equal(a.chols[:, k], b.chols[:, k])
            and np.array_equal(a.logits[:, k], b.logits[:, k])
        )
    ]


@pytest.mark.parametrize("arch", networks.ARCHITECTURES)
def test_writing_what_was_read_changes_nothing(arch):
    _, variables, _ = _net(arch)
    for k in (0, 3):
        again = slot_layout.write(variables, k, slot_layout.read(variables, k))
        assert jax.tree.all(jax.tree.map(np.array_equal, again, variables))


@pytest.mark.parametrize("arch", networks.ARCHITECTURES)
def test_a_written_slot_is_the_only_one_that_changes(arch):
    module, variables, contexts = _net(arch)
    s = slot_layout.read(variables, 2)
    assert (
        s.gate_kernel.shape == (4,) and s.mean_offset.shape == (D,) and s.logit_offset.shape == ()
    )
    moved = s.replace(
        mean_offset=s.mean_offset + 0.3, diag_offset=s.diag_offset - 0.2, logit_offset=1.5
    )
    assert _changed_slots(module, variables, slot_layout.write(variables, 2, moved), contexts) == [
        2
    ]
    # A slot's component network gives exactly the network's outputs of that slot (per_component).
    if arch == "per_component":
        _, mean_raw, _, _ = slot_layout.component_net(module).apply(
            {"params": s.component}, contexts
        )
        pre = mean_raw + s.mean_offset
        mean = networks.preactivation_to_mean(pre, module.lower, module.upper, module.mean_squash)
        np.testing.assert_allclose(mean, module.apply(variables, contexts).means[:, 2], atol=1e-6)


def test_zero_covariance_heads_make_the_cholesky_factor_constant():
    module, variables, contexts = _net("per_component")
    flat = slot_layout.read(variables, 1).with_zero_covariance_heads()
    chols = module.apply(slot_layout.write(variables, 1, flat), contexts).chols[:, 1]
    np.testing.assert_allclose(chols, jnp.broadcast_to(chols[0], chols.shape), atol=1e-7)


@pytest.mark.parametrize("arch", networks.ARCHITECTURES)
def test_slot_mask_covers_exactly_the_slots_entries(arch):
    module, variables, contexts = _net(arch)
    params = variables["params"]
    chosen = np.arange(K) == 3
    mask = slot_layout.slot_mask(params, chosen)
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    perturbed = jax.tree.map(lambda m, x: jnp.where(m, x + 0.5, x), mask, params)
    after = {"params": perturbed, "slots": variables["slots"]}
    assert _changed_slots(module, variables, after, contexts) == [3]
    gate = slot_layout.gate_mask(params, chosen)
    n_gate = sum(int(np.sum(leaf)) for leaf in jax.tree.leaves(gate))
    assert n_gate == 4 + 1  # the slot's gate-head column (H_g = 4) and bias entry
    assert slot_layout.num_slots(params) == K
