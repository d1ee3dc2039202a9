"""avips_jax.hardware: the CPU model name of results headers."""

import platform

from avips_jax import hardware


def test_cpu_model_reads_the_model_name_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000 @ 1 GHz\nflags\t: x\n")
    assert hardware.cpu_model(cpuinfo) == "Test CPU 9000 @ 1 GHz"


def test_cpu_model_falls_back_to_platform(tmp_path):
    fallback = platform.processor() or platform.machine()
    assert hardware.cpu_model(tmp_path / "missing") == fallback
    (tmp_path / "no_model").write_text("processor\t: 0\n")
    assert hardware.cpu_model(tmp_path / "no_model") == fallback
