"""Experiment configs: every robot and preset gives a valid config and its target; specs parse."""

import importlib

import pytest

from avips_jax import kinematics, presets, targets
from avips_jax.config import validate_config
from experiments.configs import planar, toy

# config module -> (target name, robot, context)
ROBOT_CONFIGS = {
    "panda": ("ik", "panda", "position"),
    "panda_pose": ("ik", "panda", "pose"),
    "valkyrie": ("ik", "valkyrie", "position"),
    "valkyrie_arm": ("ik", "valkyrie_arm", "position"),
    "atlas": ("ik", "atlas", "position"),
    "atlas_arm": ("ik", "atlas_arm", "position"),
    "talos": ("talos", "talos", "position"),
}


def _module(name):
    return importlib.import_module(f"experiments.configs.{name}")


@pytest.mark.parametrize("name", sorted(ROBOT_CONFIGS))
def test_robot_configs_build_their_target(name):
    target_name, robot, context = ROBOT_CONFIGS[name]
    quick, full = _module(name).get_config(), _module(name).get_config("full")
    assert quick.to_dict() == _module(name).get_config("quick").to_dict()  # the default preset
    for config in (quick, full):
        validate_config(config)
        assert config.target.name == target_name
    target = targets.make_target(target_name, **quick.target.kwargs.to_dict())
    assert target.robot.name == robot
    if target_name == "ik":
        assert quick.target.kwargs.robot_name == robot
        assert quick.target.kwargs.context == context
        assert target.dim == kinematics.load_robot(robot).dof
        assert target.context_dim == {"position": 3, "pose": 7}[context]


@pytest.mark.parametrize("name", sorted(ROBOT_CONFIGS))
def test_full_preset_is_paper_scale_and_quick_is_smaller(name):
    quick, full = _module(name).get_config("quick"), _module(name).get_config("full")
    assert full.train.batch_contexts >= 512
    assert 16 <= full.model.num_components <= 32
    assert full.train.num_steps >= 50_000
    assert full.eval.num_targets == 1000 and full.eval.samples_per_target == 250
    assert quick.train.batch_contexts < full.train.batch_contexts
    assert quick.train.num_steps < full.train.num_steps
    assert quick.eval.num_targets < full.eval.num_targets


@pytest.mark.parametrize("name", sorted(ROBOT_CONFIGS))
def test_unknown_preset_names_the_choices(name):
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of quick, full"):
        _module(name).get_config("huge")


@pytest.mark.parametrize("name", sorted(ROBOT_CONFIGS))
def test_precise_preset_is_quick_with_a_narrower_likelihood_and_more_steps(name):
    quick, precise = _module(name).get_config("quick"), _module(name).get_config("precise")
    validate_config(precise)
    assert precise.model.to_dict() == quick.model.to_dict()
    assert precise.train.batch_contexts == quick.train.batch_contexts
    assert precise.train.num_steps > quick.train.num_steps
    width = "gripper_std" if quick.target.name == "talos" else "position_std"
    assert precise.target.kwargs[width] < quick.target.kwargs[width]
    flow = _module(name).get_config("precise,flow")
    assert flow.baseline.hidden == _module(name).get_config("quick,flow").baseline.hidden


def test_toy_spec_parses_target_and_preset():
    # The default keeps the experiment settings the training tests rely on.
    assert toy.get_config().target.name == "moving_gmm"
    assert toy.get_config("moving_gmm").train.num_steps == 4000
    assert toy.get_config("banana").train.num_steps == 10000
    quick = toy.get_config("banana,quick")
    assert quick.target.name == "banana" and quick.train.num_steps == 1000
    assert toy.get_config("quick,banana").to_dict() == quick.to_dict()
    assert toy.get_config("quick").target.name == "moving_gmm"
    test = toy.get_config("funnel,test")
    assert test.train.num_steps == 8 and test.target.kwargs.context_dim == 2
    for spec in ("banana,huge", "banana,quick,full", "nope"):
        with pytest.raises(ValueError, match="huge|preset|nope"):
            toy.get_config(spec)


def test_planar_spec_parses_links_and_preset():
    assert planar.get_config().target.kwargs.num_links == 10
    assert planar.get_config().train.num_steps == 3000
    quick = planar.get_config("5,quick")
    assert quick.target.kwargs.num_links == 5 and quick.train.num_steps == 300
    assert planar.get_config("quick").target.kwargs.num_links == 10
    with pytest.raises(ValueError, match="num_links"):
        planar.get_config("0")


def test_split_spec():
    choices = ("quick", "full")
    assert presets.split_spec("", choices, "quick") == (None, "quick")
    assert presets.split_spec("a, full", choices, "quick") == ("a", "full")
    with pytest.raises(ValueError, match="unknown preset 'b'"):
        presets.split_spec("a,b", choices, "quick")
    with pytest.raises(ValueError, match="must be"):
        presets.split_spec("quick,full", choices, "quick")


def test_method_variants_of_the_robot_configs():
    from avips_jax.config import validate_config

    vanilla = presets.ik_config("panda", "quick,vanilla_gmm")
    validate_config(vanilla)
    assert vanilla.method == "vanilla_gmm" and not vanilla.projection.enabled
    assert vanilla.model.initial_components == vanilla.model.num_components
    single = presets.ik_config("panda", "full,single_gaussian")
    assert single.model.num_components == 1 and single.projection.enabled
    assert not presets.ik_config("panda", "quick,single_gaussian_noproj").projection.enabled
    with pytest.raises(ValueError, match="unknown method 'gan2'"):
        presets.ik_config("panda", "quick,gan2")
    # The aVIPS-only component-loss share is set for aVIPS, never for the baselines.
    assert presets.ik_config("panda", "quick").train.uniform_component_share > 0
    for method in presets.METHODS[1:]:
        assert presets.ik_config("panda", f"quick,{method}").train.uniform_component_share == 0
    vanilla.projection.enabled = True
    with pytest.raises(ValueError, match=r"switch off \['projection.enabled'\]"):
        validate_config(vanilla)
    vanilla.projection.enabled = False
    vanilla.train.uniform_component_share = 0.1
    with pytest.raises(ValueError, match=r"switch off \['train.uniform_component_share'\]"):
        validate_config(vanilla)
    vanilla.train.uniform_component_share = 0.0
    vanilla.method = "vips"
    with pytest.raises(ValueError, match="method must be one of"):
        validate_config(vanilla)


@pytest.mark.parametrize("name", sorted(ROBOT_CONFIGS))
def test_robot_configs_project_means_and_covariances(name):
    """Every robot config trains aVIPS with the full KL projection, in its stable form
    (tests/test_covariance_projection_training.py)."""
    for preset in presets.PRESETS:
        c = _module(name).get_config(preset)
        assert c.projection.enabled and c.projection.covariance, preset
        assert c.projection.covariance_gradient == "stop" and c.projection.alpha == 1.0, preset


@pytest.mark.parametrize("name", sorted(ROBOT_CONFIGS))
def test_quick_robot_configs_anneal_the_target_for_avips_and_the_vanilla_gmm(name):
    """The quick preset anneals (measured there); precise / full do not (not measured)."""
    for method in ("avips", "vanilla_gmm"):
        c = _module(name).get_config(f"quick,{method}")
        assert c.train.anneal_fraction == 0.8 and c.train.anneal_start == 0.01, method
        validate_config(c)
    for preset in set(presets.PRESETS) - {"quick"}:
        assert _module(name).get_config(preset).train.anneal_fraction == 0.0, preset
