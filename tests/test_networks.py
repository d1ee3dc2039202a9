"""Tests of avips_jax.networks: shapes, output constraints, initialisation and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avips_jax import gmm, networks

K, D, DC, B = 4, 3, 2, 6
LOWER = np.array([-1.0, -2.0, 0.0])
UPPER = np.array([1.0, 2.0, 3.0])
ARCHS = ["per_component", "shared_trunk"]


pytestmark = pytest.mark.usefixtures("fast_compiles")


def make(arch, **fields):
    fields = {"component_hidden": (16, 16), "gate_hidden": (8,), **fields}
    return networks.make_gmm_network(K, D, LOWER, UPPER, architecture=arch, **fields)


def init(module, seed):
    """init_gmm_network under jit (one compilation instead of many eager ops)."""
    init_fn = functools.partial(networks.init_gmm_network, module=module, context_dim=DC)
    return jax.jit(init_fn)(jax.random.key(seed))


def contexts(seed=0, b=B, dc=DC):
    return jax.random.normal(jax.random.key(seed), (b, dc))


@functools.cache
def built(arch):
    """(module, variables) per architecture, shared by the tests."""
    module = make(arch, min_std=0.05, init_std=0.5)
    return module, init(module, 1)


@pytest.fixture(params=ARCHS)
def net(request):
    return built(request.param)


def test_variables_layout(net):
    module, variables = net
    assert set(variables) == {"params", "slots"}
    slots = variables["slots"]
    assert slots["mean_offset"].shape == (K, D)
    assert slots["diag_offset"].shape == (K, D)
    assert slots["logit_offset"].shape == (K,)
    for leaf in jax.tree.leaves(variables["params"]["components"]):
        assert leaf.shape[0] == K  # slot axis first in both architectures
    assert variables["params"]["gate"]["head"]["kernel"].shape == (8, K)


def test_output_shapes_and_constraints(net):
    module, variables = net
    params = module.apply(variables, contexts())
    assert params.logits.shape == (B, K)
    assert params.means.shape == (B, K, D)
    assert params.chols.shape == (B, K, D, D)
    chols = np.asarray(params.chols)
    np.testing.assert_array_equal(chols, np.tril(chols))
    assert np.all(np.diagonal(chols, axis1=-2, axis2=-1) >= 0.05)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))


def test_means_equal_slot_offsets_at_init(net):
    module, variables = net
    params = module.apply(variables, contexts(seed=3))
    expected = networks.preactivation_to_mean(
        variables["slots"]["mean_offset"], LOWER, UPPER, "tanh"
    )
    np.testing.assert_allclose(params.means, np.broadcast_to(expected, (B, K, D)), rtol=1e-6)
    # Offsets spread over the central 90% of the box, and differ between slots.
    u = (np.asarray(expected) - (LOWER + UPPER) / 2) / ((UPPER - LOWER) / 2)
    assert np.all(np.abs(u) <= 0.9 + 1e-5)
    assert np.min(np.abs(u[:, None] - u[None])[~np.eye(K, dtype=bool)]) > 0


def test_means_inside_box_for_large_parameters(net):
    module, variables = net
    big = jax.tree.map(lambda x: 50.0 * jnp.sign(x) + x, variables["params"])
    params = module.apply({"params": big, "slots": variables["slots"]}, 10.0 * contexts())
    means = np.asarray(params.means)
    assert np.all(means >= LOWER) and np.all(means <= UPPER)
    assert np.all(np.diagonal(params.chols, axis1=-2, axis2=-1) >= 0.05)
    assert np.any(np.abs(means - (LOWER + UPPER) / 2) > 0.5 * (UPPER - LOWER) / 2)


def test_diag_equals_init_std_for_zero_head(net):
    module, variables = net
    params = jax.tree.map(jnp.copy, variables["params"])
    for leaf in ("kernel", "bias"):
        params["components"]["diag_head"][leaf] = jnp.zeros_like(
            params["components"]["diag_head"][leaf]
        )
    out = module.apply({"params": params, "slots": variables["slots"]}, contexts())
    np.testing.assert_allclose(np.diagonal(out.chols, axis1=-2, axis2=-1), 0.5, rtol=1e-6)


def test_jit_matches_eager(net):
    module, variables = net
    c = contexts(seed=4)
    jitted = jax.jit(module.apply)(variables, c)
    eager = module.apply(variables, c)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_head_features_shapes(net):
    module, variables = net
    gate_features, component_features = module.apply(
        variables, contexts(), method=module.head_features
    )
    assert gate_features.shape == (B, 8)
    assert component_features.shape == (B, K, 16)


def test_wrong_context_shape_raises(net):
    module, variables = net
    with pytest.raises(ValueError, match=r"d_c=2"):
        module.apply(variables, jnp.zeros((B, DC + 1)))
    with pytest.raises(ValueError, match=r"\(B, d_c\)"):
        module.apply(variables, jnp.zeros((DC,)))


def test_per_component_slots_are_independent():
    module, variables = built("per_component")
    c = contexts(seed=5)
    before = module.apply(variables, c)
    params = jax.tree.map(jnp.copy, variables["params"])
    params["components"] = jax.tree.map(lambda x: x.at[2].add(0.3), params["components"])
    after = module.apply({"params": params, "slots": variables["slots"]}, c)
    others = np.arange(K) != 2
    np.testing.assert_array_equal(after.means[:, others], before.means[:, others])
    np.testing.assert_array_equal(after.chols[:, others], before.chols[:, others])
    assert not np.allclose(after.means[:, 2], before.means[:, 2])


def test_linear_squash_and_offdiag_scale():
    module = make("shared_trunk", mean_squash="linear", offdiag_scale=0.0, gate_hidden=())
    variables = init(module, 3)
    out = module.apply(variables, contexts())
    pre = variables["slots"]["mean_offset"]
    np.testing.assert_allclose(
        out.means[0], (LOWER + UPPER) / 2 + (UPPER - LOWER) / 2 * pre, rtol=1e-6
    )
    chols = np.asarray(out.chols)
    np.testing.assert_array_equal(chols * (1 - np.eye(D)), 0.0)  # diagonal only
    with pytest.raises(ValueError, match=r"d_c=2"):  # check also works without gate layers
        module.apply(variables, jnp.zeros((B, 5)))


def test_mean_preactivation_roundtrip():
    x = np.array([[-0.5, 1.5, 2.9], [0.0, 0.0, 1.5]])
    for squash in networks.MEAN_SQUASHES:
        pre = networks.mean_to_preactivation(x, LOWER, UPPER, squash)
        np.testing.assert_allclose(
            networks.preactivation_to_mean(pre, LOWER, UPPER, squash), x, rtol=1e-5
        )
    outside = networks.mean_to_preactivation(np.array([5.0, -5.0, 10.0]), LOWER, UPPER, "tanh")
    assert np.all(np.isfinite(outside))


def test_gradients_flow_to_all_params(net):
    module, variables = net
    c = contexts(seed=6)

    def loss(params):
        out = module.apply({"params": params, "slots": variables["slots"]}, c)
        return jnp.sum(out.means**2) + jnp.sum(out.chols**2) + jnp.sum(out.logits**2)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(leaf)), path
        assert np.any(leaf != 0), path


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"architecture": "transformer"}, "Unknown architecture"),
        ({"mean_squash": "sigmoid"}, "Unknown mean_squash"),
        ({"activation": "swish9"}, "Unknown activation"),
        ({"init_std": 1e-4}, "init_std"),
        ({"init_spread": 1.5}, "init_spread"),
        ({"bogus": 1}, "Unknown ConditionalGMM fields"),
    ],
)
def test_invalid_fields_raise(fields, match):
    with pytest.raises(ValueError, match=match):
        networks.make_gmm_network(K, D, LOWER, UPPER, **fields)


def test_invalid_box_raises():
    with pytest.raises(ValueError, match="upper > lower"):
        networks.make_gmm_network(K, D, UPPER, LOWER)
    with pytest.raises(ValueError, match="lower/upper must have shape"):
        networks.make_gmm_network(K, D, LOWER[:2], UPPER[:2])


def test_gmm_functions_accept_network_output(net):
    module, variables = net
    params = module.apply(variables, contexts())
    x = jax.random.normal(jax.random.key(6), (2, B, D))
    assert gmm.log_prob(params, jnp.ones(K, bool), x).shape == (2, B)
