"""Shared pieces of the experiment configs: preset names and the IK config builder.

Every config file `experiments/configs/<name>.py` defines `get_config(arg)` where `arg` is the text
after the colon of `--config=experiments/configs/<name>.py:<arg>`. The presets are
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
    c.model.mean_squash = "tanh"  # means inside the joint limits
    c.model.init_std = 0.5  # radians
    c.projection.eps_mean = 0.1
    c.projection.eps_cov = 0.01
    c.train.lr_decay = "cosine"
    # ELBO-based merging hurts IK: on Panda (1500 steps) it cut the model to one component and the
    # ELBO fell from -4 to -91 nats (mean position error 87 mm vs 33 mm without merging).
    c.components.merge_tolerance = 0.0
    # The full projection (means and covariances), with no gradient into the predicted covariance
    # where its bound is active and the regression at alpha = 1. With exact gradients through the
    # covariance projection (and alpha = 10) Panda blew up (1500 steps: ELBO -1412 vs 1.05 with the
    # means projected only): Adam undoes the ~1/(1+eta) damping of the implicit gradient and the
    # raw covariance drifts. Panda quick, 3000 steps, seeds 0-2 (results/covariance_projection/):
    # median ELBO 2.59 vs 2.08 (means only) and 2.63 (vanilla GMM), entropy -5.15 vs -5.57 and
    # -5.10, coverage ratio 2.48 vs 3.25 and 2.76, 3.54 vs 1.62 and 2.52 components per context.
    c.projection.covariance = True
    c.projection.covariance_gradient = "stop"
    c.projection.alpha = 1.0
    # Start with every slot, let removal prune (Panda, 1500 steps: ELBO 1.4 vs 0.4 starting from 4;
    # 3 slots left at the end). New components start at 5% weight and get 10 checks to prove
    # themselves: at 0.1% they were removed before the weight step could grow them.
    c.components.init_weight = 0.05
    c.components.remove_patience = 10
    # Keep training every component on every context (10% uniform share in the component loss
    # weights): with the thesis weighting, slots that lose a context stop improving there (best vs
    # second-best component ELBO 20-37 nats apart per context) and the weights rightly collapse.
    # Panda, 1500 steps: ELBO 1.52 vs 1.38, 23.4 vs 24.0 mm, components per context (w > 1%) 1.44
    # vs 1.36, per-context gap 4.9 vs 37 nats; 3000 steps (with removal off), seeds 0/1: ELBO
    # 2.32/1.98 vs 2.32/1.76, components per context 1.36/1.28 vs 1.24/1.15. Removal stays on
    # (1500 steps with it off: 1.43 components per context, ELBO 1.61): models should end small.
    c.train.uniform_component_share = 0.1
    if preset in CPU_PRESETS:
        c.model.num_components = 8
        c.model.initial_components = 8
        c.model.component_hidden = (128, 128)
        c.model.gate_hidden = (64, 64)
        c.train.num_steps = 10_000
        c.train.batch_contexts = 64
        c.train.samples_per_component = 4
        c.train.component_lr = 3e-3
        # A gate that learns as fast as the components hands each context to whichever slot is
        # ahead early, and the others, no longer trained there, never catch up: about one
        # component per context. At 3e-4 (quick, 3000 steps, seeds 0-2, results/gate_lr/) the
        # median ELBO rose for aVIPS (Panda 1.95 -> 2.08, Valkyrie -5.30 -> -2.77) and the
        # vanilla GMM (2.33 -> 2.63, -1.18 -> -0.97), with higher entropy, lower MMD and
        # 1.6-3.5 components per context; 1e-4 spread further but lost ELBO and accuracy.
        # `precise` keeps 1e-3: at its 30k steps 3e-4 changed little (Panda, seeds 0-2,
        # results/gate_lr/seeds_panda_precise_gate_lr_3e-4.md: aVIPS entropy -13.05 vs -13.20,
        # median ELBO -3.95 vs -3.91, still ~1 component per context).
        c.train.gate_lr = 3e-4 if preset == "quick" else 1e-3
        if preset == "quick":
            # Target annealing (train.target_beta): beta * log p with beta from 0.01 to 1 over
            # the first 80 % of the steps. Panda, 10k steps, seeds 0-2
            # (results/covariance_projection/seeds_panda_quick10k_*): aVIPS ELBO 4.16 vs 3.46,
            # entropy -3.95 vs -4.82, coverage ratio 1.95 vs 2.62, 5.7 vs 3.0 components per
            # context, 21.5 vs 21.2 mm; the vanilla GMM (which inherits it) gains as much
            # (4.35 vs 3.62). Starting at 0.001 was too hot (3000 steps: ELBO -2.6). Valkyrie /
            # Atlas, 3000 steps: coverage ratio 1.93 -> 1.59 / 1.63 -> 1.42, ELBO up 1.1 / 0.8.
            c.train.anneal_fraction = 0.8
            c.train.anneal_start = 0.01
        c.train.log_every = 50
        c.train.checkpoint_every = 500
        c.components.check_every = 100
        c.components.add_every = 200
        c.eval.num_targets = 100
    else:
        c.model.num_components = 24
        c.model.initial_components = 24
        c.model.component_hidden = (256, 256, 256)
        c.model.gate_hidden = (128, 128)
        c.train.num_steps = 100_000
        c.train.batch_contexts = 512
        c.train.samples_per_component = 8
        c.train.component_lr = 1e-3
        c.train.gate_lr = 1e-3
        c.train.log_every = 500
        c.train.checkpoint_every = 5000
        c.components.check_every = 500
        c.components.add_every = 2000
        c.eval.num_targets = 1000
    if preset == "precise":
        # Panda, 15k steps: sigma_pos 2 mm gives 6.9 mm mean raw error, 3 mm gives 8.9 mm (the
        # mean norm of N(0, sigma^2 I_3) is 1.6 sigma: 3.2 / 4.8 mm), 1 cm gives ~20 mm.
        c.target.kwargs.position_std = 0.002
        c.train.num_steps = 30_000
    c.eval.samples_per_target = 250
    return apply_method(c, method.strip() or "avips", preset)
