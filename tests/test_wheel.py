"""The package is usable after `pip install`: a wheel built from this checkout, installed into a
fresh virtual environment outside the repository, trains (tiny), evaluates and solves a robot
file of the user's own with its console commands.

The default test gives the fresh environment this environment's dependencies (a .pth line to the
current site-packages; the checkout itself is not reachable) and installs the wheel without
dependencies: it checks what the wheel ships. The `slow` test installs the wheel with its
dependencies resolved by pip from the package index, as a user would.
"""

import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from tests.targets.test_ik_robot import ARM

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    "--config.model.num_components=2",
    "--config.model.initial_components=2",
    "--config.model.component_hidden=(8,)",
    "--config.model.gate_hidden=(8,)",
    "--config.train.num_steps=4",
    "--config.train.batch_contexts=4",
    "--config.train.samples_per_component=2",
    "--config.train.log_every=2",
    "--config.train.log_samples=2",
    "--config.train.checkpoint_every=2",
    "--config.components.check_every=2",
    "--config.components.add_every=2",
    "--config.target.kwargs.tip=hand",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"] + ["-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (found,) = out.glob("avips_jax-*.whl")
    return found


def _venv(path: pathlib.Path, wheel: pathlib.Path, with_deps: bool) -> pathlib.Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = path / "bin" / "python"
    if with_deps:
        constraints = ["-c", str(ROOT / "constraints.txt")]
        args = ["install", "-q", *constraints, str(wheel)]
    else:  # this environment's dependencies, then the wheel alone
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        pathlib.Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        args = ["install", "-q", "--no-deps", str(wheel)]
    subprocess.run([str(python), "-m", "pip", *args], check=True, capture_output=True, timeout=1800)
    return path / "bin"


def _run(
    bin_dir: pathlib.Path, cwd: pathlib.Path, *args: str, codes: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    out = subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode in codes, out.stdout + out.stderr
    return out


def _train_evaluate_solve(bin_dir: pathlib.Path, home: pathlib.Path) -> None:
    (home / "arm4.urdf").write_text(ARM)
    where = _run(bin_dir, home, "python", "-c", "import avips_jax; print(avips_jax.__file__)")
    assert str(ROOT) not in where.stdout and str(bin_dir.parent) in where.stdout
    train = _run(
        bin_dir,
        home,
        "avips-train",
        "--config=robot.py:arm4.urdf,quick",  # the packaged config, a file of the user's own
        "--workdir=run",
        "--noprogress",
        *TINY,
    )
    assert "done: run step 4" in train.stdout
    assert (home / "run" / "robot" / "arm4.urdf").read_text() == ARM
    evaluate = _run(
        bin_dir,
        home,
        "avips-evaluate",
        "--workdir=run",
        "--num_targets=2",
        "--samples_per_target=4",
        "--norefine",
        "--nolatency",
    )
    tag = "targets2_samples4_norefine_nolatency"  # not the config's setting: its own directory
    assert (home / "run" / "eval" / tag / "metrics.json").is_file(), evaluate.stdout
    # A 4-step model: exit 2 (no sample reached the target) is as right as 0 here.
    solve = _run(
        bin_dir, home, "avips-solve", "--workdir=run", "--target", "0.3", "0", "0.3", codes=(0, 2)
    )
    assert "samples reach the target" in solve.stdout


def test_the_wheel_trains_evaluates_and_solves_outside_the_checkout(wheel, tmp_path):
    bin_dir = _venv(tmp_path / "venv", wheel, with_deps=False)
    home = tmp_path / "home"
    home.mkdir()
    _train_evaluate_solve(bin_dir, home)


@pytest.mark.slow
def test_a_fresh_install_with_dependencies_from_the_index_works(wheel, tmp_path):
    bin_dir = _venv(tmp_path / "venv", wheel, with_deps=True)
    home = tmp_path / "home"
    home.mkdir()
    _train_evaluate_solve(bin_dir, home)
