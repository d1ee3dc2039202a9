"""Multi-process (multi-host) data parallelism: `jax.distributed`, one mesh over the devices of
every process, and process 0 as the only writer of a run directory's files.

    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=0)  # in each process
    mesh = distributed.data_mesh()            # every device of every process, axis "data"
    run.train_and_checkpoint(config, workdir, mesh=mesh)

Every process runs the same program on the same config: it samples the same context batch
(the contexts of step t come from the seed and t alone), keeps the slice its devices hold
(`global_array`) and the replicated state; XLA's collectives (gloo on CPU, NCCL on GPU, ICI on
TPU) combine the gradients. Checkpoints are written collectively by orbax; config.json,
history.jsonl, TensorBoard, the lock and the metrics only by process 0 (`is_writer`).

On a TPU pod slice, or a SLURM / Open MPI job, `initialize()` without arguments reads the
settings from the environment (`jax.distributed.initialize`'s cluster detection).
"""

import itertools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

AXIS = "data"
# How long `wait_for_all` waits for the slowest process (process 0 evaluating a model alone).
WAIT_TIMEOUT_S = 24 * 3600
_barrier_ids = itertools.count()  # every process runs the same program: the same sequence


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to the job (`jax.distributed.initialize`); call before any other JAX
    call. CPU devices exchange data through gloo (the setting is ignored by other backends).

    Raises:
        ValueError: only some of the three settings given.
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "multi-process training needs all of --coordinator_address, --num_processes and "
            "--process_id (or none of them, for the cluster's auto-detection)"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes the run directory's files (process 0)."""
    return jax.process_index() == 0


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh, axis `AXIS`, over `devices` (default: every device of every process)."""
    return Mesh(np.array(jax.devices() if devices is None else devices), (AXIS,))


def global_array(x, sharding: NamedSharding) -> jax.Array:
    """`x`, the same host value in every process, as one array laid out by `sharding` over the
    devices of all processes (each process places only the pieces its devices hold)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name` (no-op in one process)."""
    if is_multiprocess():
        multihost_utils.sync_global_devices(name)


def wait_for_all(name: str, timeout_s: float = WAIT_TIMEOUT_S) -> None:
    """Waits until every process reaches `name`, through the coordination service rather than
    the devices (no-op in one process): for processes that idle while process 0 works alone,
    e.g. evaluates a model. A device collective (`barrier`) would time out, or make JAX's own
    shutdown barrier give up, while process 0 works for minutes.

    Raises:
        jax.errors.JaxRuntimeError: `timeout_s` passed, or a process died.
    """
    if not is_multiprocess():
        return
    # jax.distributed keeps its coordination-service client here; JAX has no public barrier that
    # leaves the devices out.
    from jax._src import distributed as jax_distributed

    barrier_id = f"{name}.{next(_barrier_ids)}"
    jax_distributed.global_state.client.wait_at_barrier(barrier_id, int(timeout_s * 1000))


def first_signal(signum: int | None) -> int | None:
    """The stop signal any process received (`preemption.StopRequest.signum`), so that all
    stop at the same step; this process's own in a single-process run. One small all-gather
    per call across processes."""
    if not is_multiprocess():
        return signum
    received = multihost_utils.process_allgather(np.int32(signum or 0))
    nonzero = [int(s) for s in np.ravel(received) if s]
    return nonzero[0] if nonzero else None
