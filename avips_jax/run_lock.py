"""One writer per run directory: an advisory `fcntl` lock on `<workdir>/train.lock` held while a
run trains.

    with run_lock.hold(workdir):      # RunDirectoryBusyError if another process holds it
        ...train and checkpoint...

The kernel releases the lock when its process ends, however it ends (`kill -9` included), so a
lock left by a killed run never blocks the relaunch. The file keeps a line about its holder (pid,
host, start time, command) for the message a second writer gets; it is not removed afterwards
(removing it could let two writers lock different files). Local file systems only: `flock` on
NFS is not guaranteed.
"""

import contextlib
import datetime
import fcntl
import os
import pathlib
import socket
import sys
from collections.abc import Iterator

LOCK_FILE = "train.lock"

__all__ = ["LOCK_FILE", "RunDirectoryBusyError", "hold"]


class RunDirectoryBusyError(RuntimeError):
    """Another process is training in the run directory."""


def _holder_line() -> str:
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    command = " ".join(sys.argv) or sys.executable
    return f"pid {os.getpid()} on {socket.gethostname()}, since {started}: {command}\n"


@contextlib.contextmanager
def hold(workdir: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Holds the run directory's lock for the `with` block (the directory must exist).

    Raises:
        RunDirectoryBusyError: another process holds it; the message names that process.
    """
    path = pathlib.Path(workdir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
            raise RunDirectoryBusyError(
                f"{workdir} is being trained by another process ({holder}); wait for it to "
                "finish, or use another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, _holder_line().encode())
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
