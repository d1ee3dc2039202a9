"""What machine a result came from, for the headers of results and benchmark files."""

import os
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


def available_memory_bytes(device=None) -> int | None:
    """Memory free for new arrays on `device` (default: JAX's first device), in bytes: the
    accelerator's limit minus what is in use, or for a CPU the system's available physical
    memory; None where neither is known."""
    import jax  # here: the result headers that use this module need no JAX

    device = jax.devices()[0] if device is None else device
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
