"""Small pretrained models shipped with the package (run directories of `experiments/train.py`).

    solver = avips_jax.IKSolver.pretrained("panda")
    pretrained.available()        # ("panda",)
    pretrained.path("panda")      # run directory: config.json, checkpoints/<step>/, metrics.json
    pretrained.metrics("panda")   # the evaluation that `scripts/make_pretrained.sh` wrote beside it

Each directory is produced by `bash scripts/make_pretrained.sh` (its README.md gives the command,
the date and the hardware); nothing is downloaded.
"""

import json
import pathlib

_ROOT = pathlib.Path(__file__).resolve().parent


class PretrainedModelNotFoundError(FileNotFoundError):
    """No pretrained model of that name ships with this installation."""


def available() -> tuple[str, ...]:
    """Names of the pretrained models of this installation (directories holding a config.json)."""
    return tuple(sorted(p.name for p in _ROOT.iterdir() if (p / "config.json").is_file()))


def path(name: str) -> pathlib.Path:
    """The run directory of pretrained model `name`.

    Raises:
        PretrainedModelNotFoundError: unknown name (the message lists the available ones).
    """
    if not isinstance(name, str) or name not in available():
        raise PretrainedModelNotFoundError(
            f"no pretrained model {name!r}; available: {', '.join(available()) or 'none'}"
            " (build one with scripts/make_pretrained.sh)"
        )
    return _ROOT / name


def metrics(name: str) -> dict:
    """The evaluation metrics (experiments/evaluate.py's metrics.json) of pretrained `name`."""
    return json.loads((path(name) / "metrics.json").read_text())
