"""Differentiable KL trust-region projections of Gaussians and categorical distributions.

Given a prediction q (new network output) and an old distribution q_o (the detached output of the
previous parameters), return the distribution closest to q that lies inside a KL ball around q_o
(docs/math.md §3):

    mean_p, chol_p = projection.project_gaussian(mean, chol, old_mean, old_chol, eps_mu, eps_cov)
    logits_p = projection.project_categorical(logits, old_logits, eps_w, mask=active)
    kl = projection.gaussian_kl(mean, chol, other_mean, other_chol)

Modules:
* `gaussian`: the split projection of Otto et al. (2021): closed-form mean, covariance by the
  dual variable eta (float64 under x64, chunked on CPU);
* `categorical`: the weights, w* ∝ w^{1/(1+eta)} w_o^{eta/(1+eta)} with KL(w* || w_o) = eps_w;
* `dual`: the fixed-step root finder for eta and its implicit gradients (`jax.custom_jvp`);
* `tridiagonal`: the covariance constraint in O(d) per root-finder step;
* `kl`: the KL divergences (mean and covariance parts, categorical).

Gradients. Old parameters (old_mean, old_chol, old_logits) are treated as constants: the old model
is detached in aVIPS (docs/math.md §3.9), so they pass through `jax.lax.stop_gradient` and receive
zero gradient. Gradients flow to the prediction (mean, chol, logits) and to the bounds eps.
"""

from avips_jax.projection.categorical import project_categorical
from avips_jax.projection.gaussian import (
    cov_projection_eta,
    project_cov,
    project_gaussian,
    project_mean,
)
from avips_jax.projection.kl import categorical_kl, cov_kl_part, gaussian_kl, mean_kl_part

__all__ = [
    "categorical_kl",
    "cov_kl_part",
    "cov_projection_eta",
    "gaussian_kl",
    "mean_kl_part",
    "project_categorical",
    "project_cov",
    "project_gaussian",
    "project_mean",
]
