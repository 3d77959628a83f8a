"""DDP without re-running the sweep: who creates the processes, and which rank is this.

Lightning's default ``ddp`` re-launches ``sys.argv`` for ranks > 0; under ``tagseg train -m``
that command is the whole multirun, so every rank would re-run every cell (Lightning issues
#11300, #11617), and its launcher can start children only once per process while a strategy
trains two or three times. tagseg avoids the re-launch:

* one process per job (a laptop, a workstation, the basic or ``submitit_local`` launcher with
  one task): :func:`ddp_strategy` returns DDP with ``start_method="spawn"`` (``ddp_spawn``).
  Each ``fit``/``test`` spawns its ranks from inside the job, so the script is never re-run;
* ranks created by the launcher (SLURM ``tasks_per_node = devices`` through
  ``hydra/launcher=submitit_slurm``, ``torchrun``, or ``submitit_local`` with several tasks):
  :func:`ddp_strategy` returns plain ``ddp``; Lightning sees the ranks' environment and launches
  nothing. Every rank runs the job; :class:`~tagseg.pipeline.cache.StageCache` lets rank 0 alone
  prepare and translate, and only rank 0 writes the sweep record and the loggers' files.

Either way, testing runs after the fit in one process on one device (:func:`single_process_env`
hides the launcher's ranks from that one-device trainer), so every test image is seen exactly once.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from typing import Any

#: environment variables naming this process's global rank, most specific first
_RANK_VARS = ("RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID", "LOCAL_RANK")
_WORLD_VARS = ("WORLD_SIZE", "SLURM_NTASKS", "SUBMITIT_LOCAL_NTASKS")


def global_rank() -> int:
    """This process's global rank from its launcher's environment (0 when launched alone)."""
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def world_size() -> int:
    """How many ranks the launcher created for this job (1 when launched alone)."""
    for var in _WORLD_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def launcher_created_ranks() -> bool:
    """Whether the launcher (SLURM, torchrun, submitit) created several ranks for this job."""
    return world_size() > 1


@contextlib.contextmanager
def single_process_env() -> Iterator[None]:
    """Hide the launcher's rank variables, so Lightning builds a one-device trainer (testing)."""
    names = (
        "SLURM_NTASKS",
        "SLURM_NTASKS_PER_NODE",
        "SLURM_PROCID",
        "SLURM_LOCALID",
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "NODE_RANK",
        "TORCHELASTIC_RUN_ID",
    )
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def export_submitit_local_env() -> None:
    """Give ``submitit_local`` tasks the variables torch.distributed and Lightning read.

    SLURM and torchrun set them already; a ``submitit_local`` job with ``tasks_per_node > 1``
    only sets ``SUBMITIT_LOCAL_*``. The port is derived from the job id so the ranks agree.
    """
    ntasks = os.environ.get("SUBMITIT_LOCAL_NTASKS", "")
    if not ntasks.isdigit() or int(ntasks) < 2 or "LOCAL_RANK" in os.environ:
        return
    job_id = os.environ.get("SUBMITIT_LOCAL_JOB_ID", "0")
    rank = os.environ["SUBMITIT_LOCAL_GLOBALID"]
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(20000 + zlib.crc32(job_id.encode()) % 30000),
        RANK=rank,
        LOCAL_RANK=os.environ.get("SUBMITIT_LOCAL_LOCALID", rank),
        WORLD_SIZE=ntasks,
        NODE_RANK="0",
    )


def ddp_strategy(
    find_unused_parameters: bool = False,
    process_group_backend: str | None = None,
    timeout_s: float = 1800.0,
    **kwargs: Any,
):
    """The DDP strategy that fits how this job's processes were created.

    Args:
        find_unused_parameters: passed to ``DistributedDataParallel`` (needed when a head is
            unused in some steps).
        process_group_backend: ``nccl`` / ``gloo``; ``None`` lets Lightning choose (gloo on CPU).
        timeout_s: collective timeout.
        **kwargs: any other :class:`lightning.pytorch.strategies.DDPStrategy` argument.

    Returns:
        ``DDPStrategy(start_method="popen")`` when the launcher created the ranks (Lightning
        launches nothing), else ``DDPStrategy(start_method="spawn")``.
    """
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    export_submitit_local_env()
    start_method = "popen" if launcher_created_ranks() else "spawn"
    return DDPStrategy(
        start_method=start_method,
        find_unused_parameters=find_unused_parameters,
        process_group_backend=process_group_backend,
        timeout=timedelta(seconds=timeout_s),
        **kwargs,
    )
