"""The presets of the experiment configs: preset and method names, the IK config builder, the
switches to each baseline, and "a.b=value" overrides.

Every config file `experiments/configs/<name>.py` (packaged as `avips_jax.experiments.configs`)
defines `get_config(arg)` where `arg` is the text after the colon of
`--config=experiments/configs/<name>.py:<arg>`, and builds on this module. The presets are
  quick: CPU-sized, trains in minutes (smoke runs, CI, laptops);
  full:  GPU-sized, paper scale (batch 512+ contexts, ~1e5 steps, K_max 16-32).
  precise (IK configs): the quick network and batch with sigma_pos = 2 mm and 30k steps, for the
         accuracy goal (mean raw position error below IKFlow's 7.72 mm) on a CPU in minutes.
"""

import ast

import ml_collections

from avips_jax import baselines
from avips_jax.config import default_config

PRESETS = ("quick", "full", "precise")
CPU_PRESETS = ("quick", "precise")  # the presets with the CPU-sized network and batch


def check_preset(preset: str, choices: tuple[str, ...] = PRESETS) -> str:
    """`preset`, or ValueError naming the choices."""
    if preset not in choices:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(choices)}")
    return preset


def split_spec(spec: str, presets: tuple[str, ...], default_preset: str) -> tuple[str | None, str]:
    """Splits "<name>[,<preset>]" (either part optional) into (name or None, preset).

    A part that is one of `presets` is the preset; another part is the name. Examples with
    presets ("quick", "full"): "banana" -> ("banana", default), "banana,quick" -> ("banana",
    "quick"), "quick" -> (None, "quick"), "" -> (None, default).

    Raises:
        ValueError: for more than two parts, two names or two presets.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    names = [p for p in parts if p not in presets]
    chosen = [p for p in parts if p in presets]
    if len(parts) == 2 and len(names) == 2:
        raise ValueError(
            f"unknown preset {names[1]!r} in {spec!r}; choose one of {', '.join(presets)}"
        )
    if len(parts) > 2 or len(names) > 1 or len(chosen) > 1:
        raise ValueError(
            f"config argument {spec!r} must be '<name>[,<preset>]' with a preset from "
            f"{', '.join(presets)}"
        )
    return (names[0] if names else None), (chosen[0] if chosen else default_preset)


# Methods a robot config switches to with "<preset>,<method>", e.g. `panda.py:quick,vanilla_gmm`.
METHODS = (
    "avips",
    "vanilla_gmm",
    "single_gaussian",
    "single_gaussian_noproj",
    "flow",
    "flow_reverse_kl",
    "gan",
    "gan_no_disc",
)


def as_vanilla_gmm(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The vanilla-GMM baseline of the same network: plain reparameterised ELBO gradients, all K
    slots from the start, no projection / trust regions / SIR / adding / removal."""
    c.method = "vanilla_gmm"
    c.model.initial_components = c.model.num_components
    c.projection.enabled = False
    c.trust_region.adaptive = False
    c.sir.enabled = False
    c.components.add = False
    c.components.remove = False
    return c


def as_single_gaussian(c: ml_collections.ConfigDict, projection: bool) -> ml_collections.ConfigDict:
    """K = 1: one Gaussian per context, trained by aVIPS with or without the projection layer."""
    c.model.num_components = 1
    c.model.initial_components = 1
    c.projection.enabled = projection
    c.components.add = False
    c.components.remove = False
    return c


def as_baseline(
    c: ml_collections.ConfigDict, method: str, preset: str
) -> ml_collections.ConfigDict:
    """A baseline trainer (avips_jax.baselines) with its default settings; `quick` and `precise`
    shrink the flow's coefficient nets to a CPU size (IKFlow's 3 x 1024 stays for `full`)."""
    c.method = method
    c.baseline = baselines.default_baseline_config(method)
    if preset in CPU_PRESETS and method.startswith("flow"):
        c.baseline.num_layers = 6
        c.baseline.hidden = (256, 256, 256)
    return c


def apply_method(
    c: ml_collections.ConfigDict, method: str, preset: str = "quick"
) -> ml_collections.ConfigDict:
    """Switches an aVIPS config to one of `METHODS`; ValueError naming the choices otherwise."""
    if method == "avips":
        return c
    c.train.uniform_component_share = 0.0  # an aVIPS component-loss setting, not the baselines'
    if method in ("flow", "flow_reverse_kl", "gan", "gan_no_disc"):
        # The GMM's gate rate is unused by the flow and GAN trainers: one fixed value keeps their
        # configs (and finished runs) unchanged when the GMM presets tune it.
        c.train.gate_lr = 1e-3
        return as_baseline(c, method, preset)
    if method == "vanilla_gmm":
        return as_vanilla_gmm(c)
    if method in ("single_gaussian", "single_gaussian_noproj"):
        return as_single_gaussian(c, projection=method == "single_gaussian")
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def apply_overrides(
    c: ml_collections.ConfigDict, overrides: tuple[str, ...] | list[str]
) -> ml_collections.ConfigDict:
    """Sets "a.b=value" overrides in place, as `--config.a.b=value` would, and returns `c`.

    The value is a Python literal (3e-4, 10, True, (64, 64), 'split') or, failing that, the
    raw string; an int is accepted for a float field, a list for a tuple field and vice versa.

    Raises:
        ValueError: a malformed override, an unknown key or a value of another type (named).
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        *parents, leaf = key.split(".")
        node = c
        for name in parents:
            if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
                raise ValueError(f"unknown config key {key!r} in override {item!r}")
            node = node[name]
        if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
            raise ValueError(f"unknown config key {key!r} in override {item!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        old = node[leaf]
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(old, (list, tuple)) and isinstance(value, (list, tuple)):
            value = type(old)(value)
        if old is not None and type(value) is not type(old):
            raise ValueError(
                f"override {item!r}: {key} is a {type(old).__name__}, got a {type(value).__name__}"
            )
        node[leaf] = value
    return c


def ik_config(
    robot_name: str, preset: str, *, context: str = "position"
) -> ml_collections.ConfigDict:
    """An IK run on `robot_name` (avips_jax.kinematics name) with position or pose contexts.

    `preset` is "<preset>" or "<preset>,<method>" (method from `METHODS`, default "avips").
    """
    preset, _, method = str(preset).partition(",")
    check_preset(preset)
    c = default_config()
    c.target.name = "ik"
    c.target.kwargs.robot_name = robot_name
    c.target.kwargs.context = context  # "position" (xyz) or "pose" (xyz + quaternion w>=0)
    c.target.kwargs.position_std = 0.01  # metres: the likelihood width sigma_pos
    # Start with every slot and let removal prune (K_init studies:
    # results/covariance_projection/README.md §4).
    if preset in CPU_PRESETS:
        c.model.num_components = 8
        c.model.initial_components = 8
        c.model.component_hidden = (128, 128)
        c.model.gate_hidden = (64, 64)
        c.train.num_steps = 10_000
        c.train.samples_per_component = 4
        c.train.component_lr = 3e-3
        # A gate as fast as the components hands each context to whichever slot is ahead early
        # (about one component per context); 3e-4 had the best median ELBO at the quick budget,
        # and changed little at the precise one, which keeps 1e-3 (results/gate_lr/).
        c.train.gate_lr = 3e-4 if preset == "quick" else 1e-3
        if preset == "quick":
            # Target annealing (train.target_beta): beta * log p with beta from 0.01 to 1 over
            # the first 80 % of the steps (seed studies: results/covariance_projection/README.md
            # §4, seeds_*_anneal08*).
            c.train.anneal_fraction = 0.8
            c.train.anneal_start = 0.01
        c.train.log_every = 50
        c.train.checkpoint_every = 500
        c.eval.num_targets = 100
    else:
        c.model.num_components = 24
        c.model.initial_components = 24
        c.model.component_hidden = (256, 256, 256)
        c.model.gate_hidden = (128, 128)
        c.train.num_steps = 100_000
        c.train.batch_contexts = 512
        c.train.log_every = 500
        c.train.checkpoint_every = 5000
        c.components.check_every = 500
        c.components.add_every = 2000
    if preset == "precise":
        # sigma_pos 2 mm: the raw error follows sigma_pos (the mean norm of N(0, sigma^2 I_3) is
        # 1.6 sigma); results/seeds_panda_precise.md, results/accuracy_panda.md.
        c.target.kwargs.position_std = 0.002
        c.train.num_steps = 30_000
    return apply_method(c, method.strip() or "avips", preset)
