"""Data-parallel training over MPI (mpi4py): `mpiexec -n N minitransformer train ...`.

Every rank holds the whole model and draws its own batches; after the backward pass the gradients of all
parameters are packed into one flat float buffer, summed across ranks with one in-place `Allreduce`, and
divided by N, so every rank applies the same optimizer step to the same weights. The effective batch is
N x batch_size x grad_accum. Rank 0 alone prints, plots and writes checkpoints; evaluation is split across
ranks and averaged. docs/distributed.md explains it and measures it.

Without mpiexec (no MPI launcher in the environment) mpi4py is never imported and `world()` is the single
process, so training is exactly what it was; a run under mpiexec without mpi4py installed stops with a
message that says how to install it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

# set by the MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm's srun with PMI)
LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


class World:
    """The processes of one training run: rank in 0..size-1 and the collective operations fit() needs."""

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.comm_seconds = 0.0  # time spent in gradient all-reduces, for the benchmark

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def allreduce_mean_grads(self, params: Sequence[Any]) -> None:
        """Replace each parameter's gradient by its mean over the ranks, through one flat buffer (a parameter
        without a gradient on this rank contributes zeros)."""
        if self.size == 1:
            return
        from mpi4py import MPI

        sizes = [p.numel() for p in params]
        flat = np.empty(sum(sizes), dtype=np.float32 if params[0].dtype == np.float32 else np.float64)
        offset = 0
        for p, n in zip(params, sizes, strict=True):
            flat[offset:offset + n] = 0 if p.grad is None else p.grad.numpy().ravel()
            offset += n
        t0 = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        self.comm_seconds += time.perf_counter() - t0
        flat /= self.size
        offset = 0
        from .tensor import Tensor

        for p, n in zip(params, sizes, strict=True):
            g = flat[offset:offset + n].reshape(p.shape).astype(p.dtype, copy=False)
            p.grad = Tensor(g.copy())
            offset += n

    def broadcast_params(self, params: Sequence[Any]) -> None:
        """Copy rank 0's parameter values to every rank (the starting point must be the same everywhere)."""
        if self.size == 1:
            return
        for p in params:
            buf = np.ascontiguousarray(p.data)
            self.comm.Bcast(buf, root=0)
            p.data[...] = buf

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the ranks (the same keys everywhere)."""
        if self.size == 1:
            return values
        keys = sorted(values)
        arr = np.array([values[k] for k in keys], dtype=np.float64)
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, arr, op=MPI.SUM)
        return {k: float(v) / self.size for k, v in zip(keys, arr, strict=True)}

    def gather(self, obj: Any) -> list[Any]:
        return [obj] if self.size == 1 else self.comm.allgather(obj)

    def barrier(self) -> None:
        if self.size > 1:
            self.comm.Barrier()

    def abort(self, message: str) -> None:
        """Stop every rank of the job (instead of leaving the others waiting in a collective forever)."""
        print(f"error on rank {self.rank} of {self.size}: {message}; stopping all ranks", file=sys.stderr, flush=True)
        if self.size > 1:
            self.comm.Abort(1)


_WORLD: World | None = None


def launched_by_mpi() -> bool:
    return any(v in os.environ for v in LAUNCHER_VARIABLES)


def world() -> World:
    """The current run's World: MPI's COMM_WORLD under an MPI launcher, the single process otherwise."""
    global _WORLD
    if _WORLD is None:
        if launched_by_mpi():
            try:
                from mpi4py import MPI
            except ImportError:
                raise RuntimeError("started by an MPI launcher but mpi4py is not installed: "
                                   "pip install mpi4py mpich (or pip install 'minitransformer[mpi]')") from None
            _WORLD = World(MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None)
        else:
            _WORLD = World()
    return _WORLD
