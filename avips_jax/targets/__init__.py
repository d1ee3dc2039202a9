"""Conditional target densities log p(x | c) and a registry to build them by name.

Usage:
  target = targets.make_target("moving_gmm")
  target = targets.make_target("funnel", context_dim=1)
  targets.available()  # ('banana', 'funnel', ...)

To add a target (e.g. a robot IK target), subclass `Target` and add its constructor to
`_REGISTRY` below (or call `register` at import time of an optional module).
"""

from collections.abc import Callable

from avips_jax.targets import base, ik, planar, talos, toy
from avips_jax.targets.base import RobotTarget, Target, WorkspaceError
from avips_jax.targets.ik import IKTarget
from avips_jax.targets.planar import PlanarIK
from avips_jax.targets.talos import TalosWholeBody
from avips_jax.targets.toy import BananaMixture, Funnel, MovingGMM, SpiralGMM

__all__ = [
    "BananaMixture",
    "Funnel",
    "IKTarget",
    "MovingGMM",
    "PlanarIK",
    "RobotTarget",
    "SpiralGMM",
    "TalosWholeBody",
    "Target",
    "WorkspaceError",
    "available",
    "from_config",
    "base",
    "ik",
    "make_target",
    "planar",
    "register",
    "talos",
    "toy",
]

_REGISTRY: dict[str, Callable[..., Target]] = {
    "moving_gmm": MovingGMM,
    "spiral_gmm": SpiralGMM,
    "banana": BananaMixture,
    "funnel": Funnel,
    "planar": PlanarIK,
    "ik": IKTarget,
    "talos": TalosWholeBody,
}


def available() -> tuple[str, ...]:
    """Names accepted by `make_target`, sorted."""
    return tuple(sorted(_REGISTRY))


def register(name: str, factory: Callable[..., Target], *, overwrite: bool = False) -> None:
    """Adds a target constructor under `name`.

    Raises:
      ValueError: if `name` is taken and `overwrite` is False.
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"target name {name!r} is already registered")
    _REGISTRY[name] = factory


def make_target(name: str, **kwargs) -> Target:
    """Builds the target registered as `name` with keyword settings `kwargs`.

    Raises:
      ValueError: for an unknown name (the message lists the available ones).
      TypeError: for a setting the target does not have.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown target {name!r}; available: {', '.join(available())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as err:
        raise TypeError(f"bad settings for target {name!r}: {err}") from err


def from_config(config) -> Target:
    """The target a run config names: `make_target(config.target.name,
    **config.target.kwargs)` (raises as `make_target`)."""
    return make_target(config.target.name, **config.target.kwargs.to_dict())
