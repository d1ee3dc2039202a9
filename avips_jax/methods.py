"""The training methods by name: the one place where `config.method` is looked at.

    trainer = methods.make_trainer(config, target)   # METHODS[config.method](settings, target)
    state = trainer.init(jax.random.PRNGKey(config.seed))

`config` is a ConfigDict or its typed `settings.Settings`; the factories receive the settings.

  * "avips": the conditional GMM trained by aVIPS (`avips_jax.train`: KL projection, trust
    regions, SIR, component adding and removal between steps);
  * "vanilla_gmm": the same network and step with plain -ELBO gradients (`vanilla_gmm`);
  * "flow", "flow_reverse_kl", "gan", "gan_no_disc": the baselines (`avips_jax.baselines`).

Every factory validates the settings it reads and builds its networks, optimiser and jitted
functions without compiling or initialising anything: `init` does that.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import ml_collections

from avips_jax import adaptation, baselines, loop, networks, targets, train, vanilla_gmm
from avips_jax import model as model_lib
from avips_jax.settings import Settings, as_settings
from avips_jax.trainer import Trainer

__all__ = ["METHODS", "GMMSetup", "check_method", "extra_sections", "make_gmm", "make_trainer"]

# The loss of each method that trains the conditional GMM (same network, state and step).
_GMM_LOSSES: dict[str, Callable] = {
    "avips": train.make_loss_fn,
    "vanilla_gmm": vanilla_gmm.make_loss_fn,
}


@dataclasses.dataclass(frozen=True)
class GMMSetup:
    """The parts of a conditional-GMM method (aVIPS or the vanilla GMM) on one target."""

    target: targets.Target
    module: networks.ConditionalGMM
    optimizer: object  # optax.GradientTransformation
    init: Callable[[jax.Array], train.TrainState]  # PRNG key -> the state at step 0
    step_fn: Callable  # (TrainState, contexts) -> (TrainState, metrics), jitted


def make_gmm(config: ml_collections.ConfigDict | Settings, target: targets.Target) -> GMMSetup:
    """Network, optimiser and train step of the GMM method `config.method` on `target`.

    Raises:
        ValueError: if `config.method` is not a GMM method, or a setting is out of its range.
    """
    s = as_settings(config)
    if s.method not in _GMM_LOSSES:
        raise ValueError(f"{s.method!r} is not a GMM method ({', '.join(_GMM_LOSSES)})")
    module = train.make_model(s.network, target)
    optimizer = train.make_optimizer(s.schedule)
    loss_fn = _GMM_LOSSES[s.method](s, module, target)
    step_fn = train.make_train_step(s, module, target, optimizer, loss_fn)
    init = functools.partial(train.create_train_state, s, module, target, optimizer)
    return GMMSetup(target, module, optimizer, init, step_fn)


def _gmm_trainer(settings: Settings, target: targets.Target) -> Trainer:
    gmm = make_gmm(settings, target)
    module = gmm.module
    return Trainer(
        init=gmm.init,
        step=gmm.step_fn,
        model=lambda s: model_lib.AmortizedGMM.from_train_state(s, module, target.context_dim),
        log_scalars=loop.avips_log_scalars(settings.schedule, module, target),
        adapt=adaptation.make_adapt(settings, module, target),
    )


def _baseline_trainer(settings: Settings, target: targets.Target) -> Trainer:
    trainer = baselines.make_trainer(settings, target)
    log_scalars = loop.model_log_scalars(settings.schedule, trainer.model, target)
    return trainer.replace(log_scalars=log_scalars)


METHODS: dict[str, Callable[[Settings, targets.Target], Trainer]] = {
    **{name: _gmm_trainer for name in _GMM_LOSSES},
    **{name: _baseline_trainer for name in baselines.MODULES},
}


# Each method's own checks of the settings it reads, beyond those of `avips_jax.settings`.
_SETTINGS_CHECKS: dict[str, Callable[[Settings], None]] = {
    "vanilla_gmm": vanilla_gmm.check_settings,
}


def extra_sections(method: str) -> dict[str, ml_collections.ConfigDict]:
    """The config sections `method` needs beyond `config.default_config()`, with their defaults
    ({"baseline": ...} for a baseline, none for the GMM methods)."""
    if method in baselines.MODULES:
        return {"baseline": baselines.default_baseline_config(method)}
    return {}


def check_method(settings: Settings) -> None:
    """ValueError unless `settings.method` is a known method whose extra sections are present
    and whose own checks pass (`config.validate_config` calls it: before anything is written)."""
    method = settings.method
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}.")
    for name in extra_sections(method):
        if getattr(settings, name) is None:
            raise ValueError(
                f"method {method!r} needs a config.{name} section: config.{name} = "
                f"avips_jax.methods.extra_sections({method!r})[{name!r}]."
            )
    if method in _SETTINGS_CHECKS:
        _SETTINGS_CHECKS[method](settings)


def make_trainer(config: ml_collections.ConfigDict | Settings, target: targets.Target) -> Trainer:
    """The `Trainer` of `config.method` on `target`; `config` is a ConfigDict or its settings
    (built once here and handed to the method's factory).

    Raises:
        ValueError: an unknown method, a missing section, or settings the method refuses.
    """
    settings = as_settings(config)
    check_method(settings)
    return METHODS[settings.method](settings, target)
