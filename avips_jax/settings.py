"""Typed, validated settings: one frozen dataclass per concern, built once from the ConfigDict.

    settings = Settings.from_config(config)       # ValueError naming the first bad field
    train.make_model(settings.network, target)
    train.make_optimizer(settings.schedule)

`avips_jax.config` keeps the ConfigDict (the form that absl flags, `--config.a.b=value`
overrides and `config.json` use); each section maps to one dataclass here, field for field:

    config.model         -> Network        the conditional-GMM network and its slots
    config.train         -> Schedule       steps, batch, learning rates and the loss terms' schedule
    config.projection    -> Projection     the per-component KL trust-region projection
    config.trust_region  -> TrustRegion    the adaptive bounds of the projection
    config.sir           -> SIR            importance resampling of the adding step
    config.components    -> Components     component adding, removal and merging
    config.eval          -> Evaluation     the fixed test set of `run_report`

Each dataclass checks its own values in `__post_init__`, so a `Settings` that exists is valid. The
library functions take the dataclass of their concern and have no keyword defaults of their own
that could disagree with `config.default_config()`: the defaults live in one place.
`config.target` (a target's own keyword arguments) and `config.baseline` (a baseline's own
section, checked by its module) stay ConfigDicts, carried read-only in `Settings`.
"""

import dataclasses
import math
import typing

import ml_collections

__all__ = [
    "Components",
    "Evaluation",
    "Network",
    "Projection",
    "SIR",
    "Schedule",
    "Settings",
    "TrustRegion",
    "as_settings",
]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _at_least(section: str, obj, names: tuple[str, ...], low: int) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(value >= low, f"{section}.{name} must be >= {low}, got {value}.")


def _in_unit_interval(section: str, obj, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(0.0 <= value <= 1.0, f"{section}.{name} must be in [0, 1], got {value}.")


def _one_of(section: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(
        value in choices,
        f"{section}.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.",
    )


@dataclasses.dataclass(frozen=True)
class Network:
    """`config.model`: the conditional-GMM network (`networks.make_gmm_network`).

    `num_components` is K_max, the static number of slots; `initial_components` of them are
    active at step 0. `init_std` and `min_std` are in the units of the target's x (radians for
    IK), the Cholesky diagonal at a zero network output and its floor.
    """

    num_components: int
    initial_components: int
    architecture: str
    component_hidden: tuple[int, ...]
    gate_hidden: tuple[int, ...]
    activation: str
    mean_squash: str
    init_std: float
    min_std: float
    init_spread: float

    def __post_init__(self):
        _require(
            1 <= self.initial_components <= self.num_components,
            f"model.initial_components={self.initial_components} must be in "
            f"[1, model.num_components={self.num_components}].",
        )
        _one_of("model", "architecture", self.architecture, ("per_component", "shared_trunk"))
        _require(self.init_std > 0, f"model.init_std must be > 0, got {self.init_std}.")
        _require(self.min_std >= 0, f"model.min_std must be >= 0, got {self.min_std}.")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """`config.train`: how long and on what each step trains, and the schedule of its loss terms.

    B = `batch_contexts` contexts per step, S = `samples_per_component` reparameterised samples
    per component and context. The warm start (`warm_start_steps`), the forward-KL term
    (`forward_kl_weight`), annealing (`anneal_fraction`) and the gate refit
    (`gate_refit_fraction`) are off at 0; `config.default_config()` explains each.
    """

    num_steps: int
    batch_contexts: int
    samples_per_component: int
    component_lr: float
    gate_lr: float
    lr_decay: str
    final_lr_fraction: float
    uniform_component_share: float
    gate_refit_fraction: float
    warm_start_steps: int
    warm_start_pairs: int
    forward_kl_weight: float
    forward_kl_pairs: int
    forward_kl_gate: bool
    anneal_fraction: float
    anneal_start: float
    grad_clip: float
    log_every: int
    log_samples: int
    checkpoint_every: int
    keep_checkpoints: int

    def __post_init__(self):
        _at_least(
            "train",
            self,
            (
                "num_steps",
                "batch_contexts",
                "samples_per_component",
                "log_every",
                "log_samples",
                "checkpoint_every",
                "keep_checkpoints",
            ),
            1,
        )
        _one_of("train", "lr_decay", self.lr_decay, ("cosine", "none"))
        for name in ("component_lr", "gate_lr", "grad_clip"):
            value = getattr(self, name)
            _require(0.0 <= value < math.inf, f"train.{name} must be finite and >= 0, got {value}.")
        _require(
            0 <= self.warm_start_steps < self.num_steps,
            f"train.warm_start_steps must be in [0, train.num_steps={self.num_steps}), got "
            f"{self.warm_start_steps}.",
        )
        if self.warm_start_steps:
            _at_least("train", self, ("warm_start_pairs",), 1)
        _require(
            0.0 <= self.forward_kl_weight < math.inf,  # also refuses NaN
            f"train.forward_kl_weight must be finite and >= 0, got {self.forward_kl_weight}.",
        )
        if self.forward_kl_weight:
            _at_least("train", self, ("forward_kl_pairs",), 1)
        _in_unit_interval(
            "train", self, ("anneal_fraction", "uniform_component_share", "final_lr_fraction")
        )
        if self.anneal_fraction:
            _require(
                0.0 < self.anneal_start <= 1.0,
                f"train.anneal_start must be in (0, 1], got {self.anneal_start}.",
            )
        _require(
            0.0 <= self.gate_refit_fraction < 1.0,
            f"train.gate_refit_fraction must be in [0, 1), got {self.gate_refit_fraction}.",
        )

    @property
    def anneal_steps(self) -> int:
        """The number of steps over which the target is annealed (0: none)."""
        return int(round(self.anneal_fraction * self.num_steps))

    @property
    def gate_refit_start(self) -> int:
        """The first step of the gate-refit phase (`num_steps` when there is none)."""
        return self.num_steps - int(round(self.gate_refit_fraction * self.num_steps))


@dataclasses.dataclass(frozen=True)
class Projection:
    """`config.projection`: the KL trust-region projection layer (`objectives.project_mixture`).

    `eps_mean` and `eps_cov` are the initial per-slot bounds (nats) of the mean and covariance
    parts of the KL; `alpha` weighs the regression of the raw output onto its projection.
    """

    enabled: bool
    covariance: bool
    eps_mean: float
    eps_cov: float
    alpha: float
    regression_direction: str
    eps_weights: float
    hold_old_steps: int
    covariance_gradient: str

    def __post_init__(self):
        if self.enabled:
            _require(
                self.eps_mean > 0 and self.eps_cov > 0,
                "projection.eps_mean and projection.eps_cov must be > 0.",
            )
        _at_least("projection", self, ("hold_old_steps",), 1)
        _one_of("projection", "covariance_gradient", self.covariance_gradient, ("implicit", "stop"))
        _one_of(
            "projection",
            "regression_direction",
            self.regression_direction,
            ("forward", "reverse"),
        )
        _require(
            self.alpha >= 0 and self.eps_weights >= 0,
            "projection.alpha and projection.eps_weights must be >= 0.",
        )

    @property
    def projects_weights(self) -> bool:
        """Whether the categorical weights are projected too."""
        return self.enabled and self.eps_weights > 0


@dataclasses.dataclass(frozen=True)
class TrustRegion:
    """`config.trust_region`: the adaptive bounds (`trust_region.update_trust_region`), in nats.

    A slot's bounds grow by `grow` when its objective improved and shrink by `shrink` otherwise,
    clipped to [min, max]; `paired` judges "improved" on the same contexts and noise.
    """

    adaptive: bool
    paired: bool
    grow: float
    shrink: float
    min_eps_mean: float
    max_eps_mean: float
    min_eps_cov: float
    max_eps_cov: float

    def __post_init__(self):
        _require(self.grow >= 1.0, f"trust_region.grow must be >= 1, got {self.grow}.")
        _require(
            0.0 < self.shrink <= 1.0, f"trust_region.shrink must be in (0, 1], got {self.shrink}."
        )
        for part in ("mean", "cov"):
            low, high = getattr(self, f"min_eps_{part}"), getattr(self, f"max_eps_{part}")
            _require(
                0.0 < low <= high,
                f"trust_region needs 0 < min_eps_{part} <= max_eps_{part}, got {low}, {high}.",
            )


@dataclasses.dataclass(frozen=True)
class SIR:
    """`config.sir`: sampling importance resampling in the adding step (`sir.sir`).

    N = `num_candidates` proposal draws per context, `uniform_fraction` of them uniform over the
    target's box; M = `num_resampled` points are resampled from them.
    """

    enabled: bool
    num_candidates: int
    num_resampled: int
    uniform_fraction: float

    def __post_init__(self):
        _at_least("sir", self, ("num_candidates", "num_resampled"), 1)
        _in_unit_interval("sir", self, ("uniform_fraction",))


@dataclasses.dataclass(frozen=True)
class Components:
    """`config.components`: adding, removal and merging of components (`adaptation`).

    Periods (`check_every`, `add_every`, `grace_steps`) are in train steps; `add_until` and
    `merge_after` are fractions of `train.num_steps`; thresholds and scores are in nats except
    `remove_threshold` and `init_weight`, which are mixture weights.
    """

    remove: bool
    remove_threshold: float
    remove_patience: int
    check_every: int
    merge_tolerance: float
    merge_after: float
    merge_samples: int
    add: bool
    add_every: int
    add_until: float
    init_weight: float
    score_threshold: float
    add_min_score: float
    fit_steps: int
    reset_optimizer: bool
    grace_steps: int
    refine_iterations: int

    def __post_init__(self):
        _at_least("components", self, ("check_every", "add_every", "remove_patience"), 1)
        _at_least("components", self, ("merge_samples",), 1)
        _at_least("components", self, ("fit_steps", "grace_steps", "refine_iterations"), 0)
        _in_unit_interval("components", self, ("add_until", "merge_after"))
        _require(
            0.0 < self.init_weight < 1.0,
            f"components.init_weight must be in (0, 1), got {self.init_weight}.",
        )
        _require(
            self.merge_tolerance >= 0,
            f"components.merge_tolerance must be >= 0, got {self.merge_tolerance}.",
        )

    @property
    def grace_checks(self) -> int:
        """A newborn's grace period in removal checks: at least `grace_steps` steps."""
        return -(-self.grace_steps // self.check_every)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """`config.eval`: the fixed, seeded test set of `run_report` (independent of training)."""

    num_targets: int
    samples_per_target: int
    seed: int
    coverage_targets: int
    coverage_reference: int

    def __post_init__(self):
        _at_least("eval", self, ("num_targets", "samples_per_target", "coverage_reference"), 1)
        _require(
            self.coverage_targets >= 0,
            f"eval.coverage_targets must be >= 0 (0: no coverage), got {self.coverage_targets}.",
        )


# config section -> (Settings field, dataclass)
_SECTIONS = {
    "model": ("network", Network),
    "train": ("schedule", Schedule),
    "projection": ("projection", Projection),
    "trust_region": ("trust_region", TrustRegion),
    "sir": ("sir", SIR),
    "components": ("components", Components),
    "eval": ("evaluation", Evaluation),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run reads, typed and validated; `from_config` builds it.

    `target` and `baseline` are read-only views (`ml_collections.FrozenConfigDict`) of the
    config's sections of the same names (`baseline` is None where the config has none).
    """

    method: str
    seed: int
    network: Network
    schedule: Schedule
    projection: Projection
    trust_region: TrustRegion
    sir: SIR
    components: Components
    evaluation: Evaluation
    target: ml_collections.FrozenConfigDict
    baseline: ml_collections.FrozenConfigDict | None = None

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "Settings":
        """The settings of `config` (a `config.default_config()`, possibly overridden).

        Raises:
            ValueError: naming the field that is missing, unknown, or out of its range.
        """
        sections = {
            field: _section(config, name, kind) for name, (field, kind) in _SECTIONS.items()
        }
        for name in ("method", "seed", "target"):
            _require(name in config, f"config has no {name!r} entry.")
        baseline = config.get("baseline")
        return cls(
            method=config.method,
            seed=int(config.seed),
            target=ml_collections.FrozenConfigDict(config.target),
            baseline=None if baseline is None else ml_collections.FrozenConfigDict(baseline),
            **sections,
        )


def _section(config: ml_collections.ConfigDict, name: str, kind: type):
    """`kind` built from `config[name]`, lists as tuples; ValueError for a missing or unknown
    key."""
    _require(name in config, f"config has no {name!r} section.")
    values = dict(config[name].items())
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(fields))
    missing = sorted(set(fields) - set(values))
    _require(not unknown, f"unknown config key(s) {[f'{name}.{k}' for k in unknown]}.")
    _require(not missing, f"config lacks {[f'{name}.{k}' for k in missing]}.")
    hints = typing.get_type_hints(kind)
    for key, value in values.items():
        if hints[key] == tuple[int, ...] and isinstance(value, (list, tuple)):
            values[key] = tuple(value)
    return kind(**values)


def as_settings(config: "ml_collections.ConfigDict | Settings") -> Settings:
    """`config` itself if it is a `Settings`, else `Settings.from_config(config)`: for the entry
    points that accept either (`methods.make_trainer`, `fit.fit`)."""
    return config if isinstance(config, Settings) else Settings.from_config(config)
