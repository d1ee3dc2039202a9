"""experiments/cli_flags.py: `--config.a.b=v` is the one override syntax of every entry point."""

import pytest
from absl import app

from experiments import cli_flags, compare


def test_config_arguments_become_overrides_and_the_rest_goes_to_absl():
    store = ["left over from an earlier parse"]
    parse = cli_flags.config_override_parser(store)
    rest = parse(["prog", "--config.train.gate_lr=3e-4", "--config.model.component_hidden=(8,)"])
    assert rest == ["prog"]
    assert store == ["train.gate_lr=3e-4", "model.component_hidden=(8,)"]
    config = compare.method_config("panda", "avips", "quick", overrides=tuple(store))
    assert config.train.gate_lr == 3e-4 and tuple(config.model.component_hidden) == (8,)


def test_a_config_argument_without_a_value_is_refused_by_name():
    with pytest.raises(app.UsageError, match="--config.train.gate_lr: a config override needs"):
        cli_flags.split_config_overrides(["prog", "--config.train.gate_lr"])


def test_the_parser_exits_with_one_line_for_a_missing_value():
    with pytest.raises(SystemExit, match="error: --config.seed: a config override needs a value"):
        cli_flags.config_override_parser([])(["prog", "--config.seed"])
