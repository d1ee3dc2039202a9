"""Conditional normalizing flow baseline (IKFlow-style), trained two ways.

    trainer = flow.make_trainer(settings, target)   # settings.method: "flow" or "flow_reverse_kl"
    state = trainer.init(key)
    state, metrics = trainer.step(state, contexts)   # contexts (B, d_c); one jitted call
    model = trainer.model(state)                     # FlowModel: sample / log_prob

Objectives:
  * "flow" (maximum likelihood, IKFlow, Ames et al. 2022): each step takes B valid pairs (c, q)
    and minimises -mean log q(q | c). On IK targets they are drawn on the fly, q uniform in the
    joint box (ranges wider than 2 pi replaced by [-pi, pi]) and
    c = target.contexts_from_joints(q). On TALOS, whose uniform postures do not stand, they are
    drawn (with replacement) from a pool of `num_valid` standing postures and their gripper
    positions (`valid_pairs.valid_pairs`), made once at the first train step. SoftFlow (Kim et
    al. 2020): q gets N(0, s^2) noise with s ~ U(0, softflow_noise) per pair and s is an extra
    conditioning input (0 when sampling or evaluating). The contexts passed to `step` only set
    B (and a non-finite one skips the step).
  * "flow_reverse_kl": the reparameterised reverse KL on the same unnormalised target as aVIPS,
    loss = -mean_c E_{x~q(.|c)}[log p(x|c) - log q(x|c)] (= -ELBO), with `samples_per_context`
    draws for each context passed to `step`. Works on every target.

The architecture lives in `flow_layers.py`; config in `default_baseline_config()`.
"""

import functools
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from avips_jax import inputs
from avips_jax.baselines import base
from avips_jax.baselines import flow_layers as layers
from avips_jax.baselines import valid_pairs as pairs
from avips_jax.baselines.flow_model import FlowModel, conditioning
from avips_jax.settings import Settings, as_settings
from avips_jax.targets import Target
from avips_jax.targets import base as target_base
from avips_jax.trainer import Trainer

__all__ = [
    "METHODS",
    "FlowModel",
    "default_baseline_config",
    "joint_box",
    "make_flow",
    "make_optimizer",
    "make_trainer",
]

METHODS = ("flow", "flow_reverse_kl")


def default_baseline_config() -> ml_collections.ConfigDict:
    """`settings.baseline` of the flow methods (IKFlow's architecture at full size)."""
    b = ml_collections.ConfigDict()
    b.num_layers = 12  # Glow blocks (permutation + 2 affine couplings); IKFlow used 8-16
    b.hidden = (1024, 1024, 1024)  # coefficient-net hidden widths (LeakyReLU)
    b.negative_slope = 0.01  # LeakyReLU slope
    b.scale_clamp = 2.0  # |log-scale| of one coupling <= clamp (soft, via tanh)
    b.permutation_seed = 0  # seed of the fixed random permutations between blocks
    b.softflow_noise = 1e-3  # "flow" only: max SoftFlow noise std (rad); 0 disables SoftFlow
    b.latent_scale = 0.75  # base std used by FlowModel.sample (IKFlow); 1 = the density
    b.learning_rate = 5e-4  # Adam; decay, clipping and num_steps come from settings.schedule
    b.samples_per_context = 16  # "flow_reverse_kl" only: reparameterised draws per context
    # "flow" on TALOS only (IK targets draw fresh pairs every step): the pool of standing
    # postures, made once at the first step.
    b.num_valid = 32768
    return b


def _validate(settings: Settings, target: Target) -> None:
    b = settings.baseline
    if settings.method not in METHODS:
        raise ValueError(f"flow: config.method must be one of {METHODS}, got {settings.method!r}")
    if target.dim < 2:
        raise ValueError(f"flow: coupling layers need a target of dim >= 2, got {target.dim}")
    if settings.method == "flow":
        pairs.require_valid_pairs(target, "flow", "flow_reverse_kl")
    if b.num_layers < 1 or not b.hidden or min(b.hidden) < 1:
        raise ValueError(
            f"flow: need baseline.num_layers >= 1 and positive baseline.hidden, got "
            f"{b.num_layers}, {tuple(b.hidden)}"
        )
    for name in ("scale_clamp", "latent_scale", "learning_rate"):
        if not b[name] > 0:
            raise ValueError(f"flow: baseline.{name} must be > 0, got {b[name]}")
    if b.softflow_noise < 0 or b.samples_per_context < 1 or b.num_valid < 1:
        raise ValueError(
            "flow: need baseline.softflow_noise >= 0, baseline.samples_per_context >= 1 and "
            f"baseline.num_valid >= 1, got {b.softflow_noise}, {b.samples_per_context}, "
            f"{b.num_valid}"
        )


def joint_box(target: Target, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The box the flow is scaled to (and "flow" draws its joints from): the target's box, with
    ranges wider than 2 pi replaced by [-pi, pi] for "flow" (the IKFlow protocol)."""
    lower, upper = np.asarray(target.lower, np.float64), np.asarray(target.upper, np.float64)
    if method == "flow":
        wide = upper - lower > 2 * np.pi
        lower, upper = np.where(wide, -np.pi, lower), np.where(wide, np.pi, upper)
    return lower, upper


def make_flow(settings: Settings, target: Target) -> layers.ConditionalFlow:
    """The flax flow for `target` (validates settings.method and settings.baseline)."""
    _validate(settings, target)
    b = settings.baseline
    lower, upper = joint_box(target, settings.method)
    return layers.ConditionalFlow(
        dim=target.dim,
        hidden=tuple(int(h) for h in b.hidden),
        permutations=layers.random_permutations(target.dim, b.num_layers, b.permutation_seed),
        mid=tuple(float(v) for v in 0.5 * (lower + upper)),
        half_range=tuple(float(v) for v in 0.5 * (upper - lower)),
        scale_clamp=float(b.scale_clamp),
        negative_slope=float(b.negative_slope),
    )


def _uses_softflow(settings: Settings) -> bool:
    return settings.method == "flow" and settings.baseline.softflow_noise > 0


def make_optimizer(settings: Settings) -> optax.GradientTransformation:
    """Adam at baseline.learning_rate, cosine-decayed like aVIPS (train.lr_decay,
    train.final_lr_fraction over train.num_steps), after global-norm clipping (train.grad_clip)."""
    t, lr = settings.schedule, settings.baseline.learning_rate
    if t.lr_decay == "cosine":  # else "none" (`settings.Schedule` checks the choices)
        lr = optax.cosine_decay_schedule(lr, t.num_steps, alpha=t.final_lr_fraction)
    if t.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(t.grad_clip), optax.adam(lr))
    return optax.adam(lr)


def _draws_fresh_pairs(target) -> bool:
    """Whether "flow" draws its pairs on the fly (IK targets) rather than from a pool (TALOS)."""
    return target.has_joint_contexts


def _ml_loss(settings: Settings, target, module) -> Callable:
    """Maximum likelihood with SoftFlow noise on B = contexts.shape[0] valid pairs: fresh ones,
    or drawn from `pool` = (contexts (N, d_c), q (N, d)) when it is not None."""
    lower, upper = joint_box(target, "flow")
    noise, softflow = settings.baseline.softflow_noise, _uses_softflow(settings)

    def loss_fn(params, contexts, key, pool):
        q_key, s_key, e_key = jax.random.split(key, 3)
        if pool is None:
            q = target_base.uniform_box(q_key, contexts.shape[0], lower, upper)
            c = target.contexts_from_joints(q).astype(q.dtype)
        else:
            idx = jax.random.randint(q_key, (contexts.shape[0],), 0, pool[1].shape[0])
            c, q = pool[0][idx], pool[1][idx]
        level = None
        if softflow:
            level = jax.random.uniform(s_key, (q.shape[0], 1), q.dtype, 0.0, noise)
            q = q + level * jax.random.normal(e_key, q.shape, q.dtype)
        log_q = module.apply({"params": params}, q, conditioning(c, softflow, level))
        return -jnp.mean(log_q), {}

    return loss_fn


def _reverse_kl_loss(settings: Settings, target, module) -> Callable:
    """-ELBO with reparameterised flow samples, samples_per_context per context."""
    s = settings.baseline.samples_per_context

    def loss_fn(params, contexts, key, pool):
        del pool  # the reverse KL needs no data
        c = jnp.repeat(contexts, s, axis=0)
        x, log_q = module.apply(
            {"params": params}, key, c, method=layers.ConditionalFlow.sample_and_log_prob
        )
        elbo = jnp.mean(target.log_prob(x, c) - log_q)
        return -elbo, {"elbo": elbo}

    return loss_fn


def make_trainer(config: ml_collections.ConfigDict | Settings, target: Target) -> Trainer:
    """init / step / model of the flow baseline (`settings.method` picks the objective).

    Raises:
        ValueError: an unknown method, a bad `settings.baseline` value, a 1-D target, or "flow" on a
            target without valid pairs (`valid_pairs.has_valid_pairs`); `step` raises for
            contexts not (B, d_c).
    """
    settings = as_settings(config)
    module = make_flow(settings, target)
    optimizer = make_optimizer(settings)
    loss_fn = (_ml_loss if settings.method == "flow" else _reverse_kl_loss)(
        settings, target, module
    )
    softflow = _uses_softflow(settings)
    cond_dim = target.context_dim + int(softflow)

    def init(key: chex.PRNGKey) -> base.BaselineState:
        init_key, key = jax.random.split(key)
        x, cond = jnp.zeros((1, target.dim)), jnp.zeros((1, cond_dim))
        params = module.init(init_key, x, cond)["params"]
        return base.initial_state(params, optimizer, key)

    pool = lambda: None  # noqa: E731
    if settings.method == "flow" and not _draws_fresh_pairs(target):
        pool = pairs.lazy_valid_pairs(target, settings.seed, settings.baseline.num_valid)

    @functools.partial(jax.jit, donate_argnums=0)  # the state's buffers are reused
    def jitted_step(state: base.BaselineState, contexts: chex.Array, pool):
        key, loss_key = jax.random.split(state.key)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, aux), grads = grad_fn(state.params, contexts, loss_key, pool)
        new_state, metrics = base.guarded_update(state, optimizer, grads, loss, contexts, key)
        metrics |= aux
        return new_state, metrics

    def step(state: base.BaselineState, contexts: chex.Array):
        return jitted_step(state, inputs.check_contexts(contexts, target.context_dim), pool())

    def model(state: base.BaselineState) -> FlowModel:
        return FlowModel(
            module=module,
            params=state.params,
            context_dim=target.context_dim,
            noise_input=softflow,
            latent_scale=float(settings.baseline.latent_scale),
        )

    return Trainer(init=init, step=step, model=model)
