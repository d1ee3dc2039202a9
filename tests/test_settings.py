"""The typed settings: built from every config, each field checked where it is declared, one source
of defaults (no library keyword default disagrees with `default_config`), the thesis preset."""

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import avips_jax
from avips_jax import config as config_lib
from avips_jax import methods, presets, settings
from avips_jax.settings import Settings
from experiments.configs import panda, planar, toy

ROBOT_CONFIGS = ("panda", "panda_pose", "valkyrie", "valkyrie_arm", "atlas", "atlas_arm", "talos")


def _with(**overrides):
    """default_config() with "section.key" overrides."""
    c = config_lib.default_config()
    for key, value in overrides.items():
        section, name = key.split(".")
        c[section][name] = value
    return c


def test_every_section_becomes_its_dataclass_field_for_field():
    c = panda.get_config("quick")
    s = Settings.from_config(c)
    assert (s.method, s.seed) == ("avips", 0)
    for section, (field, kind) in settings._SECTIONS.items():
        built = getattr(s, field)
        assert isinstance(built, kind)
        assert dataclasses.asdict(built) == dict(c[section].items()), section
    assert s.target.kwargs.robot_name == "panda"
    assert s.baseline is None
    assert settings.as_settings(s) is s


def test_settings_are_frozen_and_their_views_read_only():
    s = Settings.from_config(config_lib.default_config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.schedule.num_steps = 5
    with pytest.raises(AttributeError):
        s.target.name = "other"


def test_baseline_configs_carry_their_section():
    s = Settings.from_config(panda.get_config("quick,flow"))
    assert s.method == "flow" and s.baseline.num_layers == 6


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.initial_components": 9}, r"model.initial_components=9 must be in \[1, "),
        ({"model.architecture": "dense"}, "model.architecture must be one of"),
        ({"model.init_std": 0.0}, "model.init_std must be > 0"),
        ({"train.num_steps": 0}, "train.num_steps must be >= 1"),
        ({"train.lr_decay": "linear"}, "train.lr_decay must be one of 'cosine', 'none'"),
        ({"train.component_lr": float("nan")}, "train.component_lr must be finite"),
        ({"train.final_lr_fraction": 2.0}, r"train.final_lr_fraction must be in \[0, 1\]"),
        ({"train.warm_start_steps": 2000}, r"train.warm_start_steps must be in \[0, "),
        ({"train.forward_kl_weight": float("inf")}, "train.forward_kl_weight must be finite"),
        ({"train.uniform_component_share": -0.1}, "train.uniform_component_share must be in"),
        ({"projection.eps_cov": 0.0}, "projection.eps_mean and projection.eps_cov must be > 0"),
        ({"projection.regression_direction": "both"}, "projection.regression_direction must"),
        ({"trust_region.shrink": 1.5}, r"trust_region.shrink must be in \(0, 1\]"),
        ({"trust_region.grow": 0.9}, "trust_region.grow must be >= 1"),
        ({"trust_region.min_eps_cov": 1.0}, "min_eps_cov <= max_eps_cov"),
        ({"sir.num_resampled": 0}, "sir.num_resampled must be >= 1"),
        ({"sir.uniform_fraction": 1.5}, r"sir.uniform_fraction must be in \[0, 1\]"),
        ({"components.init_weight": 1.0}, r"components.init_weight must be in \(0, 1\)"),
        ({"components.add_every": 0}, "components.add_every must be >= 1"),
        ({"components.merge_tolerance": -1.0}, "components.merge_tolerance must be >= 0"),
        ({"eval.samples_per_target": 0}, "eval.samples_per_target must be >= 1"),
    ],
)
def test_a_value_out_of_range_is_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_config(_with(**overrides))
    with pytest.raises(ValueError, match=message):  # and so before any run starts
        config_lib.validate_config(_with(**overrides))


def test_unknown_and_missing_keys_are_named():
    c = config_lib.default_config()
    c.train.num_stpes = 10
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['train.num_stpes'\]"):
        Settings.from_config(c)
    c = config_lib.default_config()
    del c.sir["num_resampled"]
    with pytest.raises(ValueError, match=r"config lacks \['sir.num_resampled'\]"):
        Settings.from_config(c)
    c = config_lib.default_config()
    del c["projection"]
    with pytest.raises(ValueError, match="no 'projection' section"):
        Settings.from_config(c)


def test_a_baseline_without_its_section_is_refused():
    c = config_lib.default_config()
    c.method = "flow"
    with pytest.raises(ValueError, match="needs a config.baseline section"):
        methods.check_method(Settings.from_config(c))


def test_derived_schedule_values():
    s = Settings.from_config(
        _with(
            **{
                "train.num_steps": 10,
                "train.anneal_fraction": 0.35,
                "train.gate_refit_fraction": 0.2,
            }
        )
    )
    assert s.schedule.anneal_steps == 4  # round(3.5)
    assert s.schedule.gate_refit_start == 8
    c = _with(**{"components.grace_steps": 250, "components.check_every": 100})
    assert Settings.from_config(c).components.grace_checks == 3  # at least 250 steps


def _settings_fields() -> dict[str, object]:
    """{field name: default_config value} over every dataclass of `Settings`."""
    s = Settings.from_config(config_lib.default_config())
    out = {}
    for field, _ in settings._SECTIONS.values():
        out.update(dataclasses.asdict(getattr(s, field)))
    return out


def test_no_library_keyword_default_disagrees_with_the_config():
    """A function parameter named like a setting either has no default, None ("from the
    config"), or the default_config value: the defaults live in one place."""
    defaults = _settings_fields()
    disagreeing, checked = [], 0
    for info in pkgutil.walk_packages(avips_jax.__path__, "avips_jax."):
        module = importlib.import_module(info.name)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__:
                continue
            for p in inspect.signature(fn).parameters.values():
                if p.name in defaults and p.default is not inspect.Parameter.empty:
                    checked += 1
                    if p.default is not None and p.default != defaults[p.name]:
                        disagreeing.append(f"{info.name}.{name}({p.name}={p.default!r})")
    assert not disagreeing, disagreeing
    assert checked > 0  # the scan sees parameters (e.g. ik_evaluation's coverage settings)


def test_default_config_is_the_thesis_with_the_robot_settings():
    """The method settings that every robot preset used become the defaults; the thesis values
    stay reachable (thesis_config), and only these fields differ."""
    default = config_lib.default_config().to_dict()
    thesis = config_lib.thesis_config().to_dict()
    changed = {
        f"{section}.{key}": (thesis[section][key], value)
        for section, values in default.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if thesis[section][key] != value
    }
    assert changed == {
        "projection.covariance_gradient": ("implicit", "stop"),
        "projection.alpha": (10.0, 1.0),
        "train.uniform_component_share": (0.0, 0.1),
        "components.init_weight": (1e-3, 0.05),
        "components.remove_patience": (3, 10),
        "components.reset_optimizer": (False, True),
        "components.merge_tolerance": (0.01, 0.0),
    }


@pytest.mark.parametrize("robot", ROBOT_CONFIGS)
def test_robot_presets_take_the_method_settings_from_the_defaults(robot):
    """No robot preset re-sets a projection, trust-region, SIR or component setting: those are
    the defaults' (the presets size the network, batch and schedule)."""
    module = importlib.import_module(f"experiments.configs.{robot}")
    default = config_lib.default_config()
    for preset in presets.PRESETS:
        c = module.get_config(preset)
        for section in ("projection", "trust_region", "sir"):
            assert c[section].to_dict() == default[section].to_dict(), (robot, preset, section)
        for key in ("remove_threshold", "remove_patience", "init_weight", "merge_tolerance"):
            assert c.components[key] == default.components[key], (robot, preset, key)


def test_toy_and_planar_experiments_run_the_thesis_settings():
    thesis = config_lib.thesis_config()
    for c in (toy.get_config("banana"), planar.get_config("10")):
        assert c.components.init_weight == thesis.components.init_weight
        assert c.train.uniform_component_share == thesis.train.uniform_component_share
        assert c.trust_region.to_dict() == thesis.trust_region.to_dict()
