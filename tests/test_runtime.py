"""avips_jax.runtime: the XLA:CPU safety flags are set by an explicit call, never by an import."""

import os
import pathlib
import subprocess
import sys

from avips_jax import runtime

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAIN_GUARD = 'if __name__ == "__main__":\n'


def test_missing_flags_are_appended_and_a_users_choice_is_kept():
    both = " ".join(runtime.CPU_SAFETY_FLAGS)
    assert runtime.with_cpu_safety_flags(None) == both
    assert runtime.with_cpu_safety_flags("  --a=1 ") == f"--a=1 {both}"
    mine = "--xla_cpu_multi_thread_eigen=true"
    assert runtime.with_cpu_safety_flags(mine) == f"{mine} {runtime.CPU_SAFETY_FLAGS[1]}"
    assert runtime.with_cpu_safety_flags(both) == both


def test_set_changes_the_environment_once():
    environ = {"XLA_FLAGS": "--a=1"}
    assert runtime.set_cpu_safety_flags(environ)
    assert environ["XLA_FLAGS"] == runtime.with_cpu_safety_flags("--a=1")
    assert not runtime.set_cpu_safety_flags(environ)


def test_importing_the_package_leaves_xla_flags_alone():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = "import os, avips_jax, avips_jax.solver; print(os.environ.get('XLA_FLAGS'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"


def test_every_entry_point_sets_the_flags_first():
    mains = [
        p
        for folder in ("avips_jax", "experiments", "benchmarks", "tests")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if MAIN_GUARD in p.read_text()
    ]
    assert len(mains) >= 13, mains
    for path in mains:
        after_guard = path.read_text().split(MAIN_GUARD, 1)[1]
        first = after_guard.strip().splitlines()[0]
        assert first == "runtime.set_cpu_safety_flags()", (path, first)
