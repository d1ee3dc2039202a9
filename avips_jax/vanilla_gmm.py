"""The vanilla-GMM baseline: aVIPS's network and train step with another loss.

The loss is -ELBO with plain reparameterised gradients (`objectives.vanilla_elbo_loss`): no KL
projection, no trust regions, no SIR, no component adding or removal, no responsibility
decomposition. `methods.METHODS["vanilla_gmm"]` trains it; `avips_jax/presets.py`
(`as_vanilla_gmm`) switches aVIPS's techniques off in a config.
"""

from collections.abc import Callable

from avips_jax import gmm, networks, objectives
from avips_jax.settings import Settings
from avips_jax.targets import Target


def check_settings(settings: Settings) -> None:
    """ValueError listing the aVIPS techniques still switched on in `settings`."""
    on = [
        name
        for name, value in (
            ("projection.enabled", settings.projection.enabled),
            ("sir.enabled", settings.sir.enabled),
            ("components.add", settings.components.add),
            ("components.remove", settings.components.remove),
            ("train.uniform_component_share", settings.schedule.uniform_component_share),
            ("train.gate_refit_fraction", settings.schedule.gate_refit_fraction),
        )
        if value
    ]
    if on:
        raise ValueError(
            f"method 'vanilla_gmm' trains without aVIPS's techniques; switch off {on} "
            "(avips_jax/presets.py: as_vanilla_gmm)."
        )


def make_loss_fn(settings: Settings, module: networks.ConditionalGMM, target: Target) -> Callable:
    """loss(params, slots, old, active, trust_region, contexts, key, beta=1) -> (loss, (LossAux,
    None)), the signature of `train.make_loss_fn` (old and trust_region are not used).

    `beta` () tempers the target: the loss sees beta * log p(x | c).
    """
    samples = settings.schedule.samples_per_component

    def loss_fn(params, slots, old, active, tr, contexts, key, beta=1.0):
        pred = module.apply({"params": params, networks.SLOTS: slots}, contexts)
        x, eps = gmm.sample_components_and_noise(pred, key, samples)
        log_p = beta * target.log_prob(x, contexts[None, :, None, :])
        own = gmm.own_sample_log_prob(pred.chols, eps)
        loss, aux = objectives.vanilla_elbo_loss(pred, active, x, log_p, own)
        return loss, (aux, None)

    return loss_fn
