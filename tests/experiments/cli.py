"""Runs an `experiments` entry point as `python -m <module>` in a subprocess, as a user would."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def module_env() -> dict[str, str]:
    """This process's environment with the repository on PYTHONPATH and XLA's optimisations off
    (tiny runs: compilation dominates): what a `python -m` subprocess of a test runs with."""
    env = dict(os.environ)
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_module(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m module args...` from the repository root in `module_env()`; stdout / stderr
    captured."""
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(
        cmd, cwd=ROOT, env=module_env(), capture_output=True, text=True, timeout=timeout
    )
