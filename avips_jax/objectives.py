"""The aVIPS objective: per-component VIPS surrogate, weight objective, trust-region regression.

All functions work on a batch of B contexts and K slots with an `active` (K,) mask
(docs/math.md §2; the VIPS decomposition of Arenz et al., ICML 2018 and JMLR 2020):

* component loss  -sum_k sg(w_k) E_{q*_k}[log p(x|c) + log q_sg(k|x,c) - log q*_k(x|c)]
  with reparameterised samples x of the projected components q*_k; the responsibilities use the
  projected mixture under stop-gradient (so the bound is tight at the current model) but keep the
  path through x. Its gradient is the VIPS per-component natural objective scaled by w_k.
* weight loss     sum_k w_k (log w_k - sg(log w_k) - sg(r_k)), r_k = E_{q*_k}[log p - log q]:
  the VIPS weight objective with reward log w_k + r_k (docs/math.md §2.1), whose optimum is the
  natural-gradient step w_k ∝ w_k exp(r_k); optimising sum_k w_k (log w_k - r_k) instead would
  drive w_k ∝ exp(r_k), which ignores the current weights and oscillates.
* regression loss alpha * mean_{b, active k} KL(sg(q*_k) || q~_k): pulls the raw network output
  into the trust region so that the projection becomes inactive over time (docs/math.md §3.8;
  Otto et al., ICLR 2021).

The component loss is centred (its value is subtracted under stop-gradient), so the value of the
total loss is -ELBO + alpha * regression with the ELBO estimate sum_k w_k r_k; its gradients are
those of the single-expression loss of the thesis (docs/math.md §2.2).
"""

import chex
import flax
import jax
import jax.numpy as jnp

from avips_jax import gmm, projection, sir


@flax.struct.dataclass
class LossAux:
    """Diagnostics of one loss evaluation (all without gradient).

    Attributes:
        elbo: (B,) ELBO estimate per context, sum_k w_k r_k.
        rewards: (B, K) r_k(c) = E_{q*_k}[log p - log q] (0 on inactive slots).
        component_objective: (K,) J_k = mean_b [log w_k + r_k], the per-slot quantity whose
            improvement drives the adaptive trust regions (0 on inactive slots).
        log_weights: (B, K) projected log-weights (-inf on inactive slots).
        regression: () the regression term before scaling by alpha.
        ess: (B,) effective sample size of the pooled samples as importance samples of the target
            (only meaningful with SIR reward estimates; else the per-context sample count).
        target_finite: () fraction of finite target values.
    """

    elbo: chex.Array
    rewards: chex.Array
    component_objective: chex.Array
    log_weights: chex.Array
    regression: chex.Array
    ess: chex.Array
    target_finite: chex.Array


def project_mixture(
    pred: gmm.GMMParams,
    old: gmm.GMMParams,
    active: chex.Array,
    eps_mean: chex.Array,
    eps_cov: chex.Array | None,
    eps_weights: float | None,
    covariance_gradient: str,
) -> gmm.GMMParams:
    """Projects every (context, slot) Gaussian of `pred` into the KL trust region around `old`.

    Args:
        pred: network output at the current parameters, (B, K) slots.
        old: network output at the previous parameters on the same contexts (treated as constant).
        active: (K,) bool mask.
        eps_mean, eps_cov: (K,) per-slot bounds (nats), shared over contexts; eps_cov None
            projects the means only (the covariances stay the network's).
        eps_weights: bound on KL(w* || w_old) per context, or None to leave the weights free.
        covariance_gradient: "implicit" differentiates the covariance projection exactly
            (implicit function theorem through the dual); "stop" passes no gradient into the
            predicted covariance where its bound is active (the projected factor is a constant
            there and only the regression loss moves the raw covariance; the thesis code does
            this), and the identity where it is inactive. Exact gradients plus Adam drift the raw
            covariance along the pinned direction (see `config.default_config`).

    Returns:
        The projected GMMParams (same shapes).
    """
    if covariance_gradient not in ("implicit", "stop"):
        raise ValueError(
            f"covariance_gradient must be 'implicit' or 'stop', got {covariance_gradient!r}"
        )
    if eps_cov is None:
        old_mean, old_chol = jax.lax.stop_gradient((old.means, old.chols))
        means = projection.project_mean(pred.means, old_mean, old_chol, eps_mean[None, :])
        chols = pred.chols
    else:
        stop = covariance_gradient == "stop"
        # With "stop" the covariance projection is computed without gradient (no implicit
        # backward pass through the dual: about a third of the step time on Panda).
        pred_chols = jax.lax.stop_gradient(pred.chols) if stop else pred.chols
        means, chols = projection.project_gaussian(
            pred.means, pred_chols, old.means, old.chols, eps_mean[None, :], eps_cov[None, :]
        )
        if stop:
            # Where the bound is inactive project_cov returns the (lower-triangular) prediction
            # itself, exactly: keep the identity's gradient there, without a second KL test.
            tril = jnp.tril(pred.chols)
            inactive = jnp.all(chols == jax.lax.stop_gradient(tril), axis=(-2, -1))
            chols = jnp.where(inactive[..., None, None], tril, chols)
    logits = pred.logits
    if eps_weights is not None:
        logits = projection.project_categorical(logits, old.logits, eps_weights, mask=active)
    return gmm.GMMParams(logits=logits, means=means, chols=chols)


def regression_loss(
    proj: gmm.GMMParams,
    pred: gmm.GMMParams,
    active: chex.Array,
    project_weights: bool,
    direction: str,
) -> chex.Array:
    """mean over contexts and active slots of the KL between sg(proj) and pred (+ weights' KL).

    direction "reverse" is KL(pred || sg(proj)) (TRL); "forward" is KL(sg(proj) || pred) (the
    thesis). The forward form weighs the gap by pred's precision, so when the raw network
    output runs narrower than its projection its gradient explodes (planar arm: regression
    terms of 1e3 and gradient norms of 1e8 with the covariance projection active); the reverse
    form weighs it by the projection's precision and grows only like -log det of pred.
    """
    proj = jax.lax.stop_gradient(proj)
    if direction == "reverse":
        kl = projection.gaussian_kl(pred.means, pred.chols, proj.means, proj.chols)  # (B, K)
    elif direction == "forward":
        kl = projection.gaussian_kl(proj.means, proj.chols, pred.means, pred.chols)
    else:
        raise ValueError(f"regression direction must be 'reverse' or 'forward', got {direction!r}")
    per_context = jnp.sum(jnp.where(active, kl, 0.0), axis=-1) / jnp.sum(active)
    if project_weights:
        per_context += projection.categorical_kl(proj.logits, pred.logits, mask=active)
    return jnp.mean(per_context)


def _diagonal(a: chex.Array) -> chex.Array:
    """(S, B, K, K) -> (S, B, K): entry [s, b, k] = a[s, b, k, k]."""
    return jnp.diagonal(a, axis1=-2, axis2=-1)


def _pooled_rewards(
    params: gmm.GMMParams,
    active: chex.Array,
    x: chex.Array,
    log_p: chex.Array,
    own_log_prob: chex.Array | None = None,
) -> tuple[chex.Array, chex.Array]:
    """Self-normalised IS estimate of r_k from ALL components' samples (sample reuse).

    The S*K_active samples of a context are draws of the equal-weight mixture of the active
    components (a deterministic-mixture proposal); E_{q_k}[f] is estimated with weights
    q_k(x)/q_pool(x), which reuses every target evaluation for every component.

    Returns:
        rewards (B, K) and the ESS (B,) of the pool as importance samples of the target.
    """
    s, b, k, _ = x.shape
    pool_log_p = jnp.reshape(jnp.swapaxes(log_p, 1, 2), (s * k, b))
    from_active = jnp.reshape(jnp.broadcast_to(active[None, :, None], (s, k, b)), (s * k, b))
    comp = gmm.per_component_sample_log_probs(params, x, own_log_prob)  # (S, B, K_s, K)
    comp = jnp.reshape(jnp.swapaxes(comp, 1, 2), (s * k, b, k))  # (N, B, K), pool order
    log_pool = jax.nn.logsumexp(jnp.where(active, comp, -jnp.inf), axis=-1) - jnp.log(
        jnp.sum(active)
    )
    log_q = jax.nn.logsumexp(gmm.log_weights(params, active) + comp, axis=-1)  # (N, B)
    valid = from_active & jnp.isfinite(pool_log_p)
    log_ratio = jnp.where(valid, pool_log_p - log_q, 0.0)
    log_iw = jnp.where(valid[..., None], comp - log_pool[..., None], -jnp.inf)  # (N, B, K)
    w = jax.nn.softmax(log_iw, axis=0)
    rewards = jnp.sum(w * log_ratio[..., None], axis=0)
    log_w_target = sir.log_importance_weights(jnp.where(valid, pool_log_p, -jnp.inf), log_pool)
    return rewards, sir.effective_sample_size(log_w_target)


def component_loss_weights(
    log_weights: chex.Array, active: chex.Array, uniform_share: float
) -> chex.Array:
    """Per-(context, slot) factors of the component surrogate: (1 - u) w_k(c) + u / K_active.

    u = 0 is the thesis's ELBO-derived weighting: component k learns only where its weight is
    large, so a slot that loses a context stops improving there and never wins it back (on Panda
    the losing slots froze 40-800 nats below the best one and were pruned). u = 1 updates every
    component on every context with equal factor, like VIPS's per-component updates, which do not
    depend on the weights. Without gradient.

    Args:
        log_weights: (B, K) log-weights (any value on inactive slots).
        active: (K,) bool mask.
        uniform_share: u in [0, 1].

    Returns:
        (B, K) non-negative factors, 0 on inactive slots, summing to 1 over the active ones.
    """
    if not 0.0 <= uniform_share <= 1.0:
        raise ValueError(f"uniform_share must be in [0, 1], got {uniform_share}.")
    w = jnp.where(active, jnp.exp(log_weights), 0.0)
    uniform = active / jnp.sum(active)
    return jnp.where(active, (1.0 - uniform_share) * w + uniform_share * uniform, 0.0)


def vips_loss(
    proj: gmm.GMMParams,
    pred: gmm.GMMParams,
    active: chex.Array,
    x: chex.Array,
    log_p: chex.Array,
    *,
    alpha: float,
    project_weights: bool,
    pooled_rewards: bool,
    regression_direction: str,
    uniform_component_share: float,
    own_log_prob: chex.Array | None = None,
) -> tuple[chex.Array, LossAux]:
    """The aVIPS loss for one batch.

    Args:
        proj: projected parameters (or `pred` itself when the projection is off); differentiable.
        pred: raw network output (for the regression term).
        active: (K,) bool mask.
        x: (S, B, K, d) reparameterised samples of the projected components (gradient path kept).
        log_p: (S, B, K) target log-density at x (its gradient w.r.t. x is used).
        alpha: weight of the trust-region regression loss (0 disables it).
        project_weights: whether `proj.logits` came from the categorical projection.
        pooled_rewards: estimate r_k by importance weighting the pooled samples of all
            components (SIR-style sample reuse, lower variance) instead of component k's own.
        regression_direction: see `regression_loss`.
        uniform_component_share: share u of the uniform 1/K_active mixed into the weights w_k(c)
            that scale the component surrogate (`component_loss_weights`); 0 is the thesis.
        own_log_prob: optional (S, B, K) `gmm.own_sample_log_prob(proj.chols, eps)` of the
            noise that drew x: each sample's density under its own component, exact (see
            `gmm.per_component_sample_log_probs`); None evaluates it by triangular solves.

    Returns:
        (scalar loss, LossAux).
    """
    s, b, k, d = x.shape
    chex.assert_shape(log_p, (s, b, k))
    sg = jax.lax.stop_gradient(proj)
    log_w = gmm.log_weights(proj, active)  # (B, K), gradient to the gate
    w_sg = component_loss_weights(jax.lax.stop_gradient(log_w), active, uniform_component_share)
    finite = jnp.isfinite(log_p)
    log_p_safe = jnp.where(finite, log_p, 0.0)

    own_sg = None if own_log_prob is None else jax.lax.stop_gradient(own_log_prob)
    log_resp = _diagonal(gmm.per_component_sample_log_responsibilities(sg, active, x, own_sg))
    if own_log_prob is None:
        log_own = gmm.gaussian_log_prob(proj.means, proj.chols, x)  # (S, B, K), params + path
    else:
        log_own = own_log_prob  # the same value and total derivative, without a solve
    own_terms = jnp.where(active, log_p_safe + log_resp - log_own, 0.0)
    component_loss = -jnp.mean(jnp.sum(w_sg * jnp.mean(own_terms, axis=0), axis=-1))
    # Centred: same gradient, value 0, so that the total loss value is -ELBO + alpha * reg.
    component_loss = component_loss - jax.lax.stop_gradient(component_loss)

    log_q = gmm.per_component_sample_log_prob(sg, active, x, own_sg)  # (S, B, K)
    if pooled_rewards:
        rewards, ess = _pooled_rewards(sg, active, jax.lax.stop_gradient(x), log_p, own_sg)
    else:
        rewards = jnp.mean(jnp.where(active, log_p_safe - log_q, 0.0), axis=0)
        ess = jnp.full((b,), s * jnp.sum(active), dtype=x.dtype)
    rewards = jax.lax.stop_gradient(jnp.where(active, rewards, 0.0))
    # KL(w || sg(w)) - sum_k w_k r_k: value -ELBO, optimum w ∝ sg(w) exp(r) (the VIPS step).
    safe_log_w = jnp.where(active, log_w, 0.0)
    log_w_sg = jax.lax.stop_gradient(safe_log_w)
    weight_loss = jnp.mean(jnp.sum(jnp.exp(log_w) * (safe_log_w - log_w_sg - rewards), axis=-1))

    reg = (
        regression_loss(proj, pred, active, project_weights, regression_direction)
        if alpha > 0
        else jnp.zeros(())
    )
    loss = component_loss + weight_loss + alpha * reg
    w = jnp.exp(jax.lax.stop_gradient(log_w))
    objective = jnp.where(active, jnp.mean(jax.lax.stop_gradient(safe_log_w) + rewards, 0), 0.0)
    aux = LossAux(
        elbo=jnp.sum(jnp.where(active, w * rewards, 0.0), axis=-1),
        rewards=rewards,
        component_objective=objective,
        log_weights=jax.lax.stop_gradient(log_w),
        regression=jax.lax.stop_gradient(reg),
        ess=jax.lax.stop_gradient(ess),
        target_finite=jnp.mean(finite & active[None, None, :]) / jnp.mean(active),
    )
    return loss, aux


def vanilla_elbo_loss(
    params: gmm.GMMParams,
    active: chex.Array,
    x: chex.Array,
    log_p: chex.Array,
    own_log_prob: chex.Array | None = None,
) -> tuple[chex.Array, LossAux]:
    """The vanilla-GMM baseline: -ELBO with plain reparameterised gradients.

    ELBO(c) = sum_k w_k(c) E_{q_k}[log p(x|c) - log q(x|c)], the sum over components exact and
    each expectation reparameterised (x = mu_k + L_k eps); every term carries its gradient (the
    weights, the sample path and the mixture density). No projection, no trust region, no
    responsibility decomposition.

    Args:
        params: network output (B, K) slots; differentiable.
        active: (K,) bool mask.
        x: (S, B, K, d) reparameterised samples of every component (gradient path kept).
        log_p: (S, B, K) target log-density at x.
        own_log_prob: optional (S, B, K) exact density of each sample under its own component
            (`gmm.own_sample_log_prob(params.chols, eps)`, differentiable); see `vips_loss`.

    Returns:
        (scalar loss = -mean_b ELBO, LossAux).
    """
    s, b, k, _ = x.shape
    chex.assert_shape(log_p, (s, b, k))
    finite = jnp.isfinite(log_p)
    log_q = gmm.per_component_sample_log_prob(params, active, x, own_log_prob)  # (S, B, K)
    rewards = jnp.where(active, jnp.mean(jnp.where(finite, log_p, 0.0) - log_q, axis=0), 0.0)
    log_w = gmm.log_weights(params, active)
    w = jnp.where(active, jnp.exp(log_w), 0.0)
    elbo = jnp.sum(w * rewards, axis=-1)  # (B,)
    sg = jax.lax.stop_gradient
    aux = LossAux(
        elbo=sg(elbo),
        rewards=sg(rewards),
        component_objective=jnp.zeros((k,), x.dtype),
        log_weights=sg(log_w),
        regression=jnp.zeros((), x.dtype),
        ess=jnp.full((b,), s * jnp.sum(active), dtype=x.dtype),
        target_finite=jnp.mean(finite & active[None, None, :]) / jnp.mean(active),
    )
    return -jnp.mean(elbo), aux


def own_sample_objective(
    params: gmm.GMMParams,
    active: chex.Array,
    x: chex.Array,
    log_p: chex.Array,
    own_log_prob: chex.Array | None = None,
) -> chex.Array:
    """J_k = mean_b [log w_k + mean_s (log p(x) - log q(x))] from component k's own samples.

    The quantity whose paired change (same contexts, same noise) drives the adaptive trust
    regions. No gradient.

    Args:
        params: the mixture the samples came from.
        active: (K,) bool mask.
        x: (S, B, K, d) samples of every component.
        log_p: (S, B, K) target log-density at x.
        own_log_prob: optional (S, B, K) exact own-component densities (see `vips_loss`).

    Returns:
        (K,) objective, 0 on inactive slots, NaN where a target value is not finite.
    """
    params, x, own_log_prob = jax.lax.stop_gradient((params, x, own_log_prob))
    log_q = gmm.per_component_sample_log_prob(params, active, x, own_log_prob)  # (S, B, K)
    rewards = jnp.mean(log_p - log_q, axis=0)  # (B, K)
    log_w = jnp.where(active, gmm.log_weights(params, active), 0.0)
    return jnp.where(active, jnp.mean(log_w + rewards, axis=0), 0.0)


def elbo_estimate(
    params: gmm.GMMParams, active: chex.Array, log_prob_fn, contexts: chex.Array, key, n: int
) -> chex.Array:
    """Plain Monte-Carlo ELBO E_q[log p(x|c) - log q(x|c)] per context from n mixture samples.

    Args:
        params: GMM parameters on B contexts.
        active: (K,) bool mask.
        log_prob_fn: target log-density, (n, B, d) and (1, B, d_c) -> (n, B).
        contexts: (B, d_c).
        key: PRNG key.
        n: samples per context.

    Returns:
        (B,) ELBO estimates (nats).
    """
    x, _ = gmm.sample(params, active, key, n)
    x = jax.lax.stop_gradient(x)
    return jnp.mean(log_prob_fn(x, contexts[None]) - gmm.log_prob(params, active, x), axis=0)
