"""`TrainState` and the one-jit aVIPS train step.

One step on a batch of contexts c (B, d_c):
  old   = network(old_params, c)                       (previous parameters, constant)
  pred  = network(params, c)
  proj  = KL projection of pred into the per-slot trust regions around old
  x     = reparameterised samples of every projected component, (S, B, K, d)
  loss  = VIPS component loss + weight loss + alpha * KL(sg(proj) || pred)
  params <- Adam step; old_params <- the parameters before the step (every step, or every
            `projection.hold_old_steps` steps: "old" then stays fixed for a block of steps)
  trust regions grow for slots whose objective J_k improved, shrink otherwise.
With `train.anneal_fraction` > 0 the objective first sees the tempered target beta * log p
(`target_beta`: beta from `train.anneal_start` up to 1); the logged ELBO is then the tempered one.
A step whose loss, gradients or target values are not finite is skipped (parameters, optimiser and
trust regions unchanged) and counted in `num_skipped`; a non-finite context is reported in the
metrics so that the loop can stop with a clear error.

Everything that changes during training lives in `TrainState` (a flax.struct pytree); the module,
the target, the optimiser and the settings (`avips_jax.settings`) are static and closed over.
"""

from collections.abc import Callable
from typing import Any

import chex
import flax
import jax
import jax.numpy as jnp
import optax

from avips_jax import components, gmm, networks, objectives, pytree, slot_layout, trust_region
from avips_jax.baselines import valid_pairs
from avips_jax.settings import Network, Schedule, Settings
from avips_jax.targets import Target

Metrics = dict[str, chex.Array]


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training.

    Attributes:
        step: () int32 number of train steps taken (skipped ones included).
        params: trainable network parameters.
        old_params: parameters before the last applied update (the "old" model).
        slots: fixed per-slot offsets of the network (edited by component adding).
        opt_state: optax state.
        trust_region: per-slot KL bounds.
        components: active mask and removal bookkeeping.
        key: PRNG key for the next step.
        num_skipped: () int32 steps skipped because of non-finite values.
    """

    step: chex.Array
    params: Any
    old_params: Any
    slots: Any
    opt_state: Any
    trust_region: trust_region.TrustRegionState
    components: components.ComponentState
    key: chex.PRNGKey
    num_skipped: chex.Array

    @property
    def variables(self) -> dict:
        return {"params": self.params, networks.SLOTS: self.slots}

    @property
    def active(self) -> chex.Array:
        return self.components.active


def make_model(m: Network, target: Target) -> networks.ConditionalGMM:
    """The conditional-GMM network for `target`, scaled to the target's box."""
    return networks.make_gmm_network(
        m.num_components,
        target.dim,
        target.lower,
        target.upper,
        architecture=m.architecture,
        component_hidden=m.component_hidden,
        gate_hidden=m.gate_hidden,
        activation=m.activation,
        mean_squash=m.mean_squash,
        init_std=m.init_std,
        min_std=m.min_std,
        init_spread=m.init_spread,
    )


def make_optimizer(t: Schedule) -> optax.GradientTransformation:
    """Adam with separate learning rates for the gate and the components (optionally cosine-decayed
    to `final_lr_fraction` of their initial value), after global-norm clipping. In the gate-refit
    phase (the last `gate_refit_fraction` of the steps) the components' rate is 0 and the gate's
    decay starts again from gate_lr."""

    def labels(params):
        return {
            name: jax.tree.map(lambda _, g="gate" if name == networks.GATE else "rest": g, sub)
            for name, sub in params.items()
        }

    def decay(lr, steps):
        if t.lr_decay == "cosine":
            return optax.cosine_decay_schedule(lr, steps, alpha=t.final_lr_fraction)
        return lr  # "none": a float, not a schedule (the optimiser state of older runs stays valid)

    refit_start = t.gate_refit_start
    gate, rest = decay(t.gate_lr, refit_start), decay(t.component_lr, refit_start)
    if refit_start < t.num_steps:
        refit = decay(t.gate_lr, t.num_steps - refit_start)
        gate = optax.join_schedules([_as_schedule(gate), _as_schedule(refit)], [refit_start])
        frozen = optax.constant_schedule(0.0)
        rest = optax.join_schedules([_as_schedule(rest), frozen], [refit_start])
    adam = optax.multi_transform({"gate": optax.adam(gate), "rest": optax.adam(rest)}, labels)
    if t.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(t.grad_clip), adam)
    return adam


def _as_schedule(lr) -> optax.Schedule:
    return lr if callable(lr) else optax.constant_schedule(lr)


def create_train_state(
    settings: Settings,
    module: networks.ConditionalGMM,
    target: Target,
    optimizer: optax.GradientTransformation,
    key: chex.PRNGKey,
) -> TrainState:
    """Initial state: network, optimiser, trust regions, and the first slots active."""
    init_key, key = jax.random.split(key)
    variables = networks.init_gmm_network(init_key, module, target.context_dim)
    m, p = settings.network, settings.projection
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        old_params=jax.tree.map(jnp.copy, variables["params"]),  # own buffers: the step donates
        slots=variables[networks.SLOTS],
        opt_state=optimizer.init(variables["params"]),
        trust_region=trust_region.init_trust_region(m.num_components, p.eps_mean, p.eps_cov),
        components=components.init_component_state(m.num_components, m.initial_components),
        key=key,
        num_skipped=jnp.zeros((), jnp.int32),
    )


def target_beta(step: chex.Array, anneal_steps: int, anneal_start: float) -> chex.Array:
    """The target's tempering exponent at `step`: anneal_start ** (1 - step / anneal_steps)
    (log-linear from anneal_start at step 0 to 1 at anneal_steps), 1 from then on and when
    anneal_steps is 0. Scalar float32."""
    if anneal_steps <= 0:
        return jnp.ones((), jnp.float32)
    progress = jnp.minimum(jnp.asarray(step, jnp.float32) / anneal_steps, 1.0)
    return jnp.asarray(anneal_start, jnp.float32) ** (1.0 - progress)


def make_loss_fn(settings: Settings, module: networks.ConditionalGMM, target: Target) -> Callable:
    """aVIPS's loss(params, slots, old, active, trust_region, contexts, key, beta=1) -> (loss,
    (LossAux, paired)).

    `beta` () tempers the target: the objective sees beta * log p(x | c) (`target_beta`).
    `paired` is None, or (J_new, J_old) (K,) each: the per-slot objective of the projected model
    and of the old model on the same contexts and noise (`trust_region.paired`).
    """
    p, t = settings.projection, settings.schedule
    eps_weights = p.eps_weights if p.projects_weights else None
    paired_tr = p.enabled and settings.trust_region.adaptive and settings.trust_region.paired

    def loss_fn(params, slots, old, active, tr, contexts, key, beta=1.0):
        pred = module.apply({"params": params, networks.SLOTS: slots}, contexts)
        proj = pred
        if p.enabled:
            eps_cov = tr.eps_cov if p.covariance else None
            proj = objectives.project_mixture(
                pred, old, active, tr.eps_mean, eps_cov, eps_weights, p.covariance_gradient
            )
        x, eps = gmm.sample_components_and_noise(proj, key, t.samples_per_component)
        log_p = beta * target.log_prob(x, contexts[None, :, None, :])
        own = gmm.own_sample_log_prob(proj.chols, eps)
        loss, aux = objectives.vips_loss(
            proj,
            pred,
            active,
            x,
            log_p,
            alpha=p.alpha if p.enabled else 0.0,
            project_weights=eps_weights is not None,
            pooled_rewards=settings.sir.enabled,
            regression_direction=p.regression_direction,
            uniform_component_share=t.uniform_component_share,
            own_log_prob=own,
        )
        paired = None
        if paired_tr:
            # The old model on the same contexts with the same noise (common random numbers).
            x_old = gmm.sample_components(old, key, t.samples_per_component)  # the same eps
            log_p_old = beta * target.log_prob(x_old, contexts[None, :, None, :])
            own_old = gmm.own_sample_log_prob(old.chols, eps)
            paired = (
                objectives.own_sample_objective(proj, active, x, log_p, own),
                objectives.own_sample_objective(old, active, x_old, log_p_old, own_old),
            )
        return loss, (aux, paired)

    return loss_fn


def make_train_step(
    settings: Settings,
    module: networks.ConditionalGMM,
    target: Target,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable | None = None,
) -> Callable[[TrainState, chex.Array], tuple[TrainState, Metrics]]:
    """The train step `(state, contexts (B, d_c)) -> (state, metrics)`: the jitted aVIPS step,
    preceded for the first `train.warm_start_steps` steps by the jitted warm-start step
    (`make_warm_start_step`; chosen on the host from `state.step`).

    `loss_fn` (default: aVIPS's, `make_loss_fn`) is the objective of the step; the vanilla GMM
    passes its own (`vanilla_gmm.make_loss_fn`).

    Contexts may be sharded over devices along B (data parallelism with `jax.sharding`); the
    parameters are replicated and XLA inserts the reductions.
    """
    vips_step = make_vips_step(settings, module, target, optimizer, loss_fn)
    warm_steps = settings.schedule.warm_start_steps
    if warm_steps <= 0:
        return vips_step
    warm_step = make_warm_start_step(settings.schedule, module, target, optimizer)

    def train_step(state: TrainState, contexts: chex.Array) -> tuple[TrainState, Metrics]:
        return (warm_step if int(state.step) < warm_steps else vips_step)(state, contexts)

    return train_step


def make_pair_nll(
    module: networks.ConditionalGMM,
    target: Target,
    num_pairs: int,
    setting: str,
    through_gate: bool = True,
) -> Callable:
    """nll(params, slots, active, key) -> (loss, pred): the mean negative log-likelihood of the
    model on `num_pairs` fresh valid pairs (c, q), q uniform in the robot's joint limits and
    c = target.contexts_from_joints(q) (`baselines.valid_pairs`): a Monte-Carlo estimate, up to a
    constant, of the forward KL from the pairs' conditional p(q | c) to the model, averaged over
    the contexts the pairs reach. `pred` is the model at those contexts. With `through_gate`
    False the weights are held constant in the likelihood (no gradient into the gate): the pairs
    then move and widen the components only.

    Raises:
        ValueError: naming `setting`, if the target has no `contexts_from_joints` (an IK target
            is needed).
    """
    if not target.has_joint_contexts:
        raise ValueError(
            f"{setting} > 0 needs an IK target with contexts_from_joints; target "
            f"{target.name!r} has none"
        )

    def nll(params, slots, active, key):
        contexts, q = valid_pairs.valid_pairs(target, key, num_pairs)
        pred = module.apply({"params": params, networks.SLOTS: slots}, contexts)
        scored = pred if through_gate else pred.replace(logits=jax.lax.stop_gradient(pred.logits))
        log_q = gmm.log_prob(scored, active, q[None].astype(pred.means.dtype))  # (1, N)
        return -jnp.mean(log_q), pred

    return nll


def make_warm_start_step(
    schedule: Schedule,
    module: networks.ConditionalGMM,
    target: Target,
    optimizer: optax.GradientTransformation,
) -> Callable[[TrainState, chex.Array], tuple[TrainState, Metrics]]:
    """The jitted mass-covering warm-start step: maximum likelihood on valid pairs, NOT VIPS.
    Donates the state's buffers, as `make_vips_step`.

    Each step draws `train.warm_start_pairs` fresh pairs (c, q): q uniform in the robot's joint
    limits, c = target.contexts_from_joints(q) (`baselines.valid_pairs`), and takes one Adam step
    on -mean log q(q | c): the forward KL from the pairs' conditional to the model, which spreads
    the components over the whole solution set of each context instead of the few modes that the
    reverse KL of VIPS settles on first. The batch `contexts` of the loop are not used (only
    checked for finiteness). The old model follows the parameters, so the projection is inactive
    at the first VIPS step; trust regions and component bookkeeping are left as they are.

    Raises:
        ValueError: if the target has no `contexts_from_joints` (an IK target is needed).
    """
    nll = make_pair_nll(module, target, schedule.warm_start_pairs, "train.warm_start_steps")

    def warm_step(state: TrainState, contexts: chex.Array) -> tuple[TrainState, Metrics]:
        key, pair_key = jax.random.split(state.key)
        grad_fn = jax.value_and_grad(nll, has_aux=True)
        (loss, pred), grads = grad_fn(state.params, state.slots, state.active, pair_key)
        contexts_ok = jnp.all(jnp.isfinite(contexts))
        ok = jnp.isfinite(loss) & pytree.all_finite(grads) & contexts_ok
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = pytree.select(ok, optax.apply_updates(state.params, updates), state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            old_params=params,
            opt_state=pytree.select(ok, opt_state, state.opt_state),
            key=key,
            num_skipped=state.num_skipped + (~ok).astype(jnp.int32),
        )
        weights = jnp.exp(gmm.log_weights(jax.lax.stop_gradient(pred), state.active))
        metrics = {
            "loss": loss,
            "warm_start_nll": loss,
            "num_active": jnp.sum(state.active.astype(jnp.int32)),
            "active_per_context": jnp.mean(jnp.sum(weights > 0.01, axis=-1)),
            "grad_norm": optax.tree.norm(grads),
            "skipped": (~ok).astype(jnp.int32),
            "contexts_finite": contexts_ok,
            "target_finite": jnp.ones(()),
            "eps_mean": state.trust_region.eps_mean,
            "eps_cov": state.trust_region.eps_cov,
            "mean_weights": jnp.mean(weights, axis=0),
        }
        return new_state, metrics

    return jax.jit(warm_step, donate_argnums=0)


def make_vips_step(
    settings: Settings,
    module: networks.ConditionalGMM,
    target: Target,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable | None = None,
) -> Callable[[TrainState, chex.Array], tuple[TrainState, Metrics]]:
    """The jitted aVIPS step `(state, contexts (B, d_c)) -> (state, metrics)` (module docstring),
    with objective `loss_fn` (default: `make_loss_fn`'s). The state's buffers are donated: the
    state passed in is invalid after the call.

    With `train.forward_kl_weight` lambda > 0 the loss also holds lambda times the negative
    log-likelihood of the model on `train.forward_kl_pairs` fresh valid pairs (`make_pair_nll`,
    metric "forward_kl_nll"): a mass-covering forward-KL term beside VIPS's mode-seeking reverse
    KL, so the objective is no longer pure reverse-KL VI. It acts on the raw network output (not
    through the projection) and its samples come from the step's key, split further only when on.

    Contexts may be sharded over devices along B (data parallelism with `jax.sharding`); the
    parameters are replicated and XLA inserts the reductions.
    """
    t = settings.schedule
    vips_loss_fn = make_loss_fn(settings, module, target) if loss_fn is None else loss_fn
    forward_kl_weight = t.forward_kl_weight
    pair_nll = None
    if forward_kl_weight > 0:
        pair_nll = make_pair_nll(
            module,
            target,
            t.forward_kl_pairs,
            "train.forward_kl_weight",
            through_gate=t.forward_kl_gate,
        )

    def loss_fn(params, slots, old, active, tr, contexts, key, beta):
        """VIPS's loss, plus lambda * forward KL on valid pairs when that term is on."""
        if pair_nll is None:
            loss, (aux, paired) = vips_loss_fn(params, slots, old, active, tr, contexts, key, beta)
            return loss, (aux, paired, None)
        key, pair_key = jax.random.split(key)  # only when on: the default stream stays as it was
        loss, (aux, paired) = vips_loss_fn(params, slots, old, active, tr, contexts, key, beta)
        nll, _ = pair_nll(params, slots, active, pair_key)
        return loss + forward_kl_weight * nll, (aux, paired, nll)

    tr_cfg = settings.trust_region
    adaptive = tr_cfg.adaptive and settings.projection.enabled
    hold_old = settings.projection.hold_old_steps
    grace = settings.components.add and settings.components.grace_steps > 0
    anneal = (t.anneal_steps, t.anneal_start)

    def train_step(state: TrainState, contexts: chex.Array) -> tuple[TrainState, Metrics]:
        key, sample_key = jax.random.split(state.key)
        old_vars = {"params": state.old_params, networks.SLOTS: state.slots}
        old = jax.lax.stop_gradient(module.apply(old_vars, contexts))
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        beta = target_beta(state.step, *anneal)
        (loss, (aux, paired, pair_nll_value)), grads = grad_fn(
            state.params,
            state.slots,
            old,
            state.active,
            state.trust_region,
            contexts,
            sample_key,
            beta,
        )
        contexts_ok = jnp.all(jnp.isfinite(contexts))
        ok = (
            jnp.isfinite(loss) & pytree.all_finite(grads) & (aux.target_finite == 1.0) & contexts_ok
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        if grace:  # newborns keep their gate column (and so about their initial weight)
            frozen = slot_layout.gate_mask(state.params, components.in_grace(state.components))
            updates = jax.tree.map(lambda m, u: jnp.where(m, 0.0, u), frozen, updates)
        params = optax.apply_updates(state.params, updates)
        tr = state.trust_region
        if adaptive:
            tr = trust_region.update_trust_region(
                tr,
                aux.component_objective if paired is None else paired[0],
                state.active,
                baseline=None if paired is None else paired[1],
                grow=tr_cfg.grow,
                shrink=tr_cfg.shrink,
                min_eps_mean=tr_cfg.min_eps_mean,
                max_eps_mean=tr_cfg.max_eps_mean,
                min_eps_cov=tr_cfg.min_eps_cov,
                max_eps_cov=tr_cfg.max_eps_cov,
            )
        new_state = state.replace(
            step=state.step + 1,
            params=pytree.select(ok, params, state.params),
            # "old" advances to the parameters before this update every `hold_old` steps, so
            # that the trust region bounds how far a block of steps moves the model.
            old_params=pytree.select(
                ok & ((state.step + 1) % hold_old == 0), state.params, state.old_params
            ),
            opt_state=pytree.select(ok, opt_state, state.opt_state),
            trust_region=pytree.select(ok, tr, state.trust_region),
            key=key,
            num_skipped=state.num_skipped + (~ok).astype(jnp.int32),
        )
        weights = jnp.exp(aux.log_weights)
        metrics = {
            "loss": loss,
            "elbo": jnp.mean(aux.elbo),
            "regression": aux.regression,
            "ess": jnp.mean(aux.ess),
            "num_active": jnp.sum(state.active.astype(jnp.int32)),
            "active_per_context": jnp.mean(jnp.sum(weights > 0.01, axis=-1)),
            "grad_norm": optax.tree.norm(grads),
            "skipped": (~ok).astype(jnp.int32),
            "contexts_finite": contexts_ok,
            "target_finite": aux.target_finite,
            "eps_mean": new_state.trust_region.eps_mean,
            "eps_cov": new_state.trust_region.eps_cov,
            "mean_weights": jnp.mean(weights, axis=0),
        }
        if pair_nll_value is not None:
            metrics["forward_kl_nll"] = pair_nll_value
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=0)
