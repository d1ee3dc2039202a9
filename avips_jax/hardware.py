"""What machine a result came from, for the headers of results and benchmark files."""

import pathlib
import platform


def cpu_model(cpuinfo: str | pathlib.Path = "/proc/cpuinfo") -> str:
    """The CPU model name: the "model name" line of `cpuinfo`, else what `platform` knows (may be
    "")."""
    try:
        for line in pathlib.Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
