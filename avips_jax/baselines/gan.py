"""Conditional generator ensemble, Lembono et al. style (RA-L 2021, arXiv 2011.05717).

    settings.method = "gan"           # generators + a discriminator on valid (c, q) pairs
    settings.method = "gan_no_disc"   # generators trained on the target's NLL alone
    trainer = gan.make_trainer(settings, target)

Model. E generators G_e(z, c) = midpoint + MLP_e([z, c]), z ~ N(0, I_L), MLP [200, 200] ReLU,
midpoint = (target.lower + target.upper) / 2 (the joint-limit midpoint of an IK target). The E
members are one `nn.vmap`-ed module with stacked parameters (leading axis E). A sample picks its
generator uniformly: within one context the n draws are split over the members as evenly as
possible (counts differ by at most one), the member labels and the draw order are shuffled, so
the generator of every single sample is uniform over the E members; this costs ceil(n / E)
evaluations per member instead of n (the reference code ran every member on every draw and kept
one). The model has no density (`has_density = False`; ELBO and entropy are n/a).

Generator loss, on contexts c (B, d_c) with S draws per context and member:
    L_G = weight_nll * mean[-log p(G_e(z, c) | c)] + weight_gan * mean[-log sigmoid D(G_e(z, c), c)]
`target.log_prob` already holds the terms of the paper's weighted sum: the joint-limit soft prior
(the paper's joint-limit cost), the position likelihood (its target NLL) and, for TALOS, the CoM
box and foot-pose terms. The paper weighs batch *sums*: GAN loss x 1, NLL x 0.05 and the costs
x 5 on batch means (= x 0.05 on sums for its batch of 100), i.e. 0.05 for every term relative to
the GAN loss; with batch means here, weight_nll = 0.05 and weight_gan = 1 keep those ratios (the
relative weights of the terms inside log p are the target's own, all 1).

Discriminator (method "gan"): MLP [40, 40] ReLU on [x, c] -> logit, trained with the logistic
loss on `num_valid` valid pairs (`valid_pairs.valid_pairs`: for IK targets q uniform in the joint
limits and c = target.contexts_from_joints(q); for TALOS standing postures and their gripper
positions), drawn once at the first train step, against the generated pairs (G(z, c), c);
non-saturating generator loss. Unlike the reference code (whose discriminator saw the
configuration, for TALOS with its foot poses, but not the context), it is conditioned on c, so
that a configuration that misses its context is fake. For IK targets with
`contexts_from_joints` and TALOS. Generator
and discriminator take their Adam steps (separate learning rates) in the same jitted call, from
gradients on the same batch.
"""

import functools
from collections.abc import Sequence
from typing import ClassVar

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avips_jax import inputs, networks, sampling_model
from avips_jax.baselines import base
from avips_jax.baselines.valid_pairs import lazy_valid_pairs, require_valid_pairs
from avips_jax.settings import Settings, as_settings
from avips_jax.trainer import Trainer

METHODS = ("gan", "gan_no_disc")
GENERATOR = "generator"
DISCRIMINATOR = "discriminator"


def default_baseline_config() -> ml_collections.ConfigDict:
    """Settings of the GAN baseline (`settings.baseline`); defaults: the paper's Panda variant.

    A step draws samples_per_context samples from every member for each of the
    `settings.schedule.batch_contexts` contexts (E * B * S generated configurations); the paper's
    batch of 100 configurations with E members is batch_contexts = 100 / E, S = 1.
    """
    c = ml_collections.ConfigDict()
    c.num_generators = 10  # E ensemble members (TALOS in the paper: 5)
    c.latent_dim = 10  # L (TALOS in the paper: 30)
    c.generator_hidden = (200, 200)
    c.discriminator_hidden = (40, 40)
    c.generator_lr = 7e-4
    c.discriminator_lr = 1.4e-3
    c.weight_nll = 0.05  # on mean -log p(x | c) (NLL + costs), relative to the GAN loss
    c.weight_gan = 1.0  # on the mean non-saturating generator loss (method "gan" only)
    c.samples_per_context = 1  # S draws per context and member in a step
    c.num_valid = 100_000  # pre-generated valid (c, q) pairs for the discriminator
    return c


def _validate(bc: ml_collections.ConfigDict) -> None:
    for name in ("num_generators", "latent_dim", "samples_per_context", "num_valid"):
        if int(bc[name]) < 1:
            raise ValueError(f"baseline.{name} must be >= 1, got {bc[name]}")
    for name in ("generator_lr", "discriminator_lr"):
        if not float(bc[name]) > 0:
            raise ValueError(f"baseline.{name} must be > 0, got {bc[name]}")
    for name in ("weight_nll", "weight_gan"):
        if not float(bc[name]) >= 0:
            raise ValueError(f"baseline.{name} must be >= 0, got {bc[name]}")
    for name in ("generator_hidden", "discriminator_hidden"):
        if any(int(w) < 1 for w in bc[name]):
            raise ValueError(f"baseline.{name} must hold positive widths, got {bc[name]}")


class Generator(nn.Module):
    """One generator: (z (..., L), c (..., d_c)) -> offset (..., d) from the box midpoint."""

    hidden: Sequence[int]
    dim: int

    @nn.compact
    def __call__(self, z: chex.Array, c: chex.Array) -> chex.Array:
        c = jnp.broadcast_to(c, z.shape[:-1] + c.shape[-1:])
        h = networks.MLP(self.hidden, "relu", name="trunk")(jnp.concatenate([z, c], -1))
        return nn.Dense(self.dim, name="out")(h)


class GeneratorEnsemble(nn.Module):
    """E generators with stacked parameters (leading axis E) plus the box midpoint.

    __call__(z (E, ..., L), c (..., d_c)) -> x (E, ..., d): member e maps z[e].
    """

    num_members: int
    hidden: Sequence[int]
    midpoint: tuple[float, ...]

    @nn.compact
    def __call__(self, z: chex.Array, c: chex.Array) -> chex.Array:
        members = nn.vmap(
            Generator,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, None),
            out_axes=0,
            axis_size=self.num_members,
        )
        offset = members(self.hidden, len(self.midpoint), name="members")(z, c)
        return offset + jnp.asarray(self.midpoint, offset.dtype)


class Discriminator(nn.Module):
    """Logit that (x (..., d), c (..., d_c)) is a valid pair: -> (...)."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: chex.Array, c: chex.Array) -> chex.Array:
        c = jnp.broadcast_to(c, x.shape[:-1] + c.shape[-1:])
        h = networks.MLP(self.hidden, "relu", name="trunk")(jnp.concatenate([x, c], -1))
        return nn.Dense(1, name="out")(h)[..., 0]


@flax.struct.dataclass
class GANEnsembleModel(sampling_model.SamplingModel):
    """The trained generator ensemble as a sampler (no density).

    Attributes:
        module: the generator ensemble (static).
        params: its parameters (leaves with leading axis E).
        context_dim: d_c (static).
        latent_dim: L (static).
    """

    module: GeneratorEnsemble = flax.struct.field(pytree_node=False)
    params: dict
    context_dim: int = flax.struct.field(pytree_node=False)
    latent_dim: int = flax.struct.field(pytree_node=False)

    has_density: ClassVar[bool] = False

    @property
    def dim(self) -> int:
        return len(self.module.midpoint)

    @property
    def num_members(self) -> int:
        return self.module.num_members

    @property
    def num_parameters(self) -> int:
        """Trainable scalars of the generators (the discriminator is not part of the model)."""
        return int(sum(np.size(p) for p in jax.tree.leaves(self.params)))

    def sample(self, key: chex.PRNGKey, contexts: chex.Array, n: int) -> jax.Array:
        """n samples per context: contexts (T, d_c) -> (T, n, d)."""
        return self.sample_with_components(key, contexts, n)[0]

    def sample_with_components(self, key: chex.PRNGKey, contexts: chex.Array, n: int):
        """Samples and the generator each came from: -> x (T, n, d), ids (T, n) int32."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return _sample(self, key, inputs.check_contexts(contexts, self.context_dim), int(n))

    def member_samples(self, key: chex.PRNGKey, contexts: chex.Array, n: int) -> jax.Array:
        """n samples of every member per context: contexts (T, d_c) -> (E, T, n, d)."""
        contexts = inputs.check_contexts(contexts, self.context_dim)
        z = jax.random.normal(key, (self.num_members, contexts.shape[0], int(n), self.latent_dim))
        return _apply(self, z, contexts[:, None, :])

    def log_prob(self, x: chex.Array, contexts: chex.Array) -> jax.Array:
        raise NotImplementedError(
            "the GAN ensemble is an implicit sampler and has no density log q(x | c) "
            "(has_density is False): report ELBO and entropy as n/a"
        )


@jax.jit
def _apply(model: GANEnsembleModel, z, contexts):
    return model.module.apply({"params": model.params}, z, contexts)


@functools.partial(jax.jit, static_argnums=3)
def _sample(model: GANEnsembleModel, key, contexts, n: int):
    """Balanced split of n draws over the E members per context, labels and order shuffled."""
    num_t, num_e = contexts.shape[0], model.num_members
    per_member = -(-n // num_e)  # ceil
    z_key, label_key, order_key = jax.random.split(key, 3)
    z = jax.random.normal(z_key, (num_e, num_t, per_member, model.latent_dim), contexts.dtype)
    x_all = model.module.apply({"params": model.params}, z, contexts[:, None, :])  # (E, T, m, d)
    labels = jax.random.uniform(label_key, (num_t, num_e)).argsort(axis=-1)  # a permutation of E
    slot = jnp.arange(n)
    ids = labels[:, slot % num_e]  # (T, n): each member count floor or ceil of n / E
    order = jax.random.uniform(order_key, (num_t, n)).argsort(axis=-1)
    ids = jnp.take_along_axis(ids, order, axis=-1)
    within = jnp.take_along_axis(jnp.broadcast_to(slot // num_e, (num_t, n)), order, axis=-1)
    x = x_all[ids, jnp.arange(num_t)[:, None], within]
    return x, ids.astype(jnp.int32)


def make_networks(settings: Settings, target) -> tuple[GeneratorEnsemble, Discriminator]:
    """The generator ensemble (offsets from the midpoint of `target.lower/upper`) and the
    discriminator of `settings.baseline`."""
    bc = settings.baseline
    midpoint = 0.5 * (np.asarray(target.lower, np.float64) + np.asarray(target.upper, np.float64))
    if not np.all(np.isfinite(midpoint)):
        raise ValueError(f"gan: the target's box has a non-finite midpoint {midpoint.tolist()}")
    generator = GeneratorEnsemble(
        num_members=int(bc.num_generators),
        hidden=tuple(int(w) for w in bc.generator_hidden),
        midpoint=tuple(float(m) for m in midpoint),
    )
    return generator, Discriminator(hidden=tuple(int(w) for w in bc.discriminator_hidden))


def make_optimizer(settings: Settings, use_discriminator: bool):
    """Adam on the generators (generator_lr) and, if used, on the discriminator (its own lr)."""
    bc = settings.baseline
    if not use_discriminator:
        return optax.multi_transform(
            {GENERATOR: optax.adam(bc.generator_lr)}, lambda p: {GENERATOR: GENERATOR}
        )
    return optax.multi_transform(
        {GENERATOR: optax.adam(bc.generator_lr), DISCRIMINATOR: optax.adam(bc.discriminator_lr)},
        lambda p: {GENERATOR: GENERATOR, DISCRIMINATOR: DISCRIMINATOR},
    )


def _bce_metrics(real_logits, fake_logits):
    """Logistic discriminator loss (real -> 1, fake -> 0) and its accuracy in [0, 1]."""
    loss = jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
    accuracy = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))
    return loss, accuracy


def make_loss_fn(settings: Settings, target, generator, discriminator, use_discriminator: bool):
    """loss(params, contexts (B, d_c), key, valid) -> (loss, aux dict).

    With the discriminator, loss = L_G + L_D, where L_G sees the discriminator's parameters
    through stop_gradient and L_D the generated samples through stop_gradient, so one gradient
    of the sum gives each network the gradient of its own loss.
    """
    bc = settings.baseline
    num_e, num_s, dim_z = int(bc.num_generators), int(bc.samples_per_context), int(bc.latent_dim)

    def loss_fn(params, contexts, key, valid):
        z_key, real_key = jax.random.split(key)
        z = jax.random.normal(z_key, (num_e, contexts.shape[0], num_s, dim_z), contexts.dtype)
        c = contexts[:, None, :]  # (B, 1, d_c)
        x = generator.apply({"params": params[GENERATOR]}, z, c)  # (E, B, S, d)
        log_p = target.log_prob(x, c)
        nll = -jnp.mean(log_p)
        spread = jnp.mean(
            jnp.std(jnp.swapaxes(x, 0, 1).reshape(contexts.shape[0], -1, x.shape[-1]), axis=1)
        )
        aux = {
            "nll": nll,
            "log_p": -nll,
            "target_finite": jnp.all(jnp.isfinite(log_p)),
            "spread": spread,
        }
        loss = bc.weight_nll * nll
        if use_discriminator:
            d_params = params[DISCRIMINATOR]
            fake_for_g = discriminator.apply({"params": jax.lax.stop_gradient(d_params)}, x, c)
            gen_gan = jnp.mean(jax.nn.softplus(-fake_for_g))  # -log sigmoid(D): non-saturating
            valid_c, valid_q = valid
            idx = jax.random.randint(real_key, (x[..., 0].size,), 0, valid_q.shape[0])
            real = discriminator.apply({"params": d_params}, valid_q[idx], valid_c[idx])
            fake = discriminator.apply({"params": d_params}, jax.lax.stop_gradient(x), c)
            disc_loss, accuracy = _bce_metrics(real, fake)
            loss = loss + bc.weight_gan * gen_gan + disc_loss
            aux.update(gen_gan=gen_gan, disc_loss=disc_loss, disc_accuracy=accuracy)
        return loss, aux

    return loss_fn


def _method(settings: Settings) -> str:
    method = settings.method
    if method not in METHODS:
        raise ValueError(f"gan: config.method must be one of {METHODS}, got {method!r}")
    return method


def make_trainer(config: ml_collections.ConfigDict | Settings, target) -> Trainer:
    """The GAN-ensemble trainer for `target` (`settings.method` "gan" or "gan_no_disc").

    Raises:
        ValueError: unknown method, bad `settings.baseline` values, or "gan" on a target without
            `contexts_from_joints` (or TALOS).
    """
    settings = as_settings(config)
    use_disc = _method(settings) == "gan"
    bc = settings.baseline
    _validate(bc)
    generator, discriminator = make_networks(settings, target)
    optimizer = make_optimizer(settings, use_disc)
    loss_fn = make_loss_fn(settings, target, generator, discriminator, use_disc)
    context_dim, dim = int(target.context_dim), int(target.dim)
    valid = lambda: None  # noqa: E731
    if use_disc:
        require_valid_pairs(target, "gan", "gan_no_disc")  # now, not at the first step
        valid = lazy_valid_pairs(target, settings.seed, bc.num_valid)

    def init(key: chex.PRNGKey) -> base.BaselineState:
        g_key, d_key, key = jax.random.split(key, 3)
        z = jnp.zeros((generator.num_members, 1, int(bc.latent_dim)))
        c = jnp.zeros((1, context_dim))
        params = {GENERATOR: generator.init(g_key, z, c)["params"]}
        if use_disc:
            params[DISCRIMINATOR] = discriminator.init(d_key, jnp.zeros((1, dim)), c)["params"]
        return base.initial_state(params, optimizer, key)

    @functools.partial(jax.jit, donate_argnums=0)  # the state's buffers are reused
    def jitted_step(state: base.BaselineState, contexts, valid):
        key, loss_key = jax.random.split(state.key)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, contexts, loss_key, valid
        )
        target_ok = aux.pop("target_finite")
        new_state, metrics = base.guarded_update(
            state, optimizer, grads, loss, contexts, key, target_ok
        )
        metrics |= aux
        return new_state, metrics

    def step(state: base.BaselineState, contexts: chex.Array):
        return jitted_step(state, inputs.check_contexts(contexts, context_dim), valid())

    def model(state: base.BaselineState) -> GANEnsembleModel:
        return GANEnsembleModel(
            module=generator,
            params=state.params[GENERATOR],
            context_dim=context_dim,
            latent_dim=int(bc.latent_dim),
        )

    return Trainer(init=init, step=step, model=model)
