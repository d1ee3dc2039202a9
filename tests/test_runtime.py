"""avips_jax.runtime: the XLA:CPU safety flags are set by an explicit call, never by an import."""

import ast
import os
import pathlib
import re
import subprocess
import sys
import textwrap

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


SET_FLAGS = "runtime.set_cpu_safety_flags()"


def _first_statement(function_source: str) -> str:
    """The first line of a function body after its docstring."""
    body = function_source.split(":\n", 1)[1]
    tree = ast.parse(textwrap.dedent(body))
    first = tree.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        first = tree.body[1]
    return ast.unparse(first)


def _function_source(path: pathlib.Path, name: str) -> str:
    tree = ast.parse(path.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return ast.get_source_segment(path.read_text(), node)


def test_every_entry_point_sets_the_flags_first():
    """Each `__main__` block, and each console command of setup.py, starts by setting the
    flags: directly, or by calling a function (`cli`) whose first statement sets them."""
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
        called = re.fullmatch(r"(\w+)\(\)", first)
        if called:
            first = _first_statement(_function_source(path, called.group(1)))
        assert first == SET_FLAGS, (path, first)
    setup = (ROOT / "setup.py").read_text()
    commands = re.findall(r'"[\w-]+ = avips_jax\.([\w.]+):(\w+)"', setup)
    assert len(commands) >= 4, commands
    for module, function in commands:
        relative = pathlib.Path(*module.split(".")).with_suffix(".py")
        # avips_jax.experiments ships from the top-level experiments/ folder (package_dir).
        in_experiments = relative.parts[0] == "experiments"
        path = ROOT / relative if in_experiments else ROOT / "avips_jax" / relative
        assert _first_statement(_function_source(path, function)) == SET_FLAGS, (path, function)
