"""Data-parallel training over MPI (mpi4py), with PyTorch's `torch.distributed` names on top.

Two ways in, one implementation underneath (`World`, whose array collectives everything else calls):

- `mpiexec -n N minitransformer train ...`: `loop.fit` asks `world()` for this process's rank. Every rank
  holds the whole model and draws its own batches; after the backward pass the gradients of all parameters
  are packed into one flat buffer, summed across ranks with one in-place `Allreduce` and divided by N, so
  every rank applies the same optimizer step to the same weights. Rank 0 alone prints and writes checkpoints.
- A PyTorch script (nanoGPT's train.py, build-nanogpt's train_gpt2.py) with its imports pointed here:
  `init_process_group`, `get_rank`, `all_reduce(t, op=ReduceOp.AVG)`, ... and
  `minitransformer.nn.parallel.DistributedDataParallel`. Every backend name ('nccl', 'gloo', 'mpi', None)
  means MPI. Started by `mpiexec -n N python train.py` or `minitransformer run -n N train.py` (launch.py).

Under an MPI launcher, importing this module sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE from the
launcher's own variables (PMI_RANK, OMPI_COMM_WORLD_RANK, ...) where they are unset: PyTorch scripts read
them right after `import torch`, before they call init_process_group.

Without an MPI launcher mpi4py is never imported: `world()` is the single process and, after
`init_process_group()`, every collective is the identity. docs/distributed.md explains and measures it.
Not here: process groups other than the whole world, NCCL or GPU-direct transfers (CUDA tensors are
copied to the host and back), and rendezvous through MASTER_ADDR (MPI's launcher does it).
"""

from __future__ import annotations

import enum
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .autograd import no_grad
from .dtypes import is_floating
from .tensor import Tensor
from .xp import device_of, to_device

# set by the MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm's srun with PMI)
LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
# PyTorch's name for each fact about a process -> what the MPI launchers call it, in order of preference
RANK_VARIABLES = {
    "RANK": ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"),
    "WORLD_SIZE": ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"),
    "LOCAL_RANK": ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"),
    "LOCAL_WORLD_SIZE": ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"),
}
INSTALL = "pip install 'minitransformer[mpi]' (= pip install mpi4py mpich)"


def _mpi() -> Any:
    from mpi4py import MPI  # only ever imported under an MPI launcher

    return MPI


class World:
    """The processes of one training run: rank in 0..size-1 and the collective operations on NumPy arrays
    that fit() and the torch names below are built from."""

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.comm_seconds = 0.0  # time spent in gradient all-reduces, for the benchmark

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def allreduce_(self, buf: np.ndarray, op: str = "SUM") -> None:
        """Combine a contiguous array across the ranks in place with MPI's `op` (SUM, PROD, MIN, MAX, ...)."""
        if self.size > 1:
            MPI = _mpi()  # noqa: N806 (mpi4py's name)
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=getattr(MPI, op))

    def reduce_(self, buf: np.ndarray, op: str = "SUM", root: int = 0) -> None:
        """Combine a contiguous array across the ranks into rank `root`'s, in place (the others' stay)."""
        if self.size > 1:
            MPI = _mpi()  # noqa: N806
            mine = root == self.rank
            self.comm.Reduce(MPI.IN_PLACE if mine else buf, buf if mine else None, op=getattr(MPI, op), root=root)

    def bcast_(self, buf: np.ndarray, root: int = 0) -> None:
        """Overwrite a contiguous array with rank `root`'s."""
        if self.size > 1:
            self.comm.Bcast(buf, root=root)

    def allgather(self, buf: np.ndarray) -> np.ndarray:
        """Every rank's contiguous array, stacked in rank order: shape (size, *buf.shape)."""
        if self.size == 1:
            return buf[None]
        out = np.empty((self.size, *buf.shape), dtype=buf.dtype)
        self.comm.Allgather(buf, out)
        return out

    def allreduce_mean_grads(self, params: Sequence[Any], keep_unused: bool = False) -> None:
        """Replace each parameter's gradient by its mean over the ranks, through one flat buffer (a parameter
        without a gradient on this rank contributes zeros). With `keep_unused` (DistributedDataParallel) a
        parameter without a gradient on every rank keeps None, as in one process: one more number per
        parameter in the buffer counts the ranks that have one."""
        if self.size == 1 or not params:
            return
        sizes = [p.numel() for p in params]
        total = sum(sizes)
        flat = np.empty(total + (len(params) if keep_unused else 0),
                        dtype=np.float32 if params[0].dtype == np.float32 else np.float64)
        offset = 0
        for p, n in zip(params, sizes, strict=True):
            flat[offset:offset + n] = 0 if p.grad is None else to_device(p.grad.data, "cpu").ravel()
            offset += n
        if keep_unused:
            flat[total:] = [p.grad is not None for p in params]
        t0 = time.perf_counter()
        self.allreduce_(flat)
        self.comm_seconds += time.perf_counter() - t0
        flat[:total] /= self.size
        offset = 0
        for i, (p, n) in enumerate(zip(params, sizes, strict=True)):
            if not keep_unused or flat[total + i] > 0:
                g = flat[offset:offset + n].reshape(p.shape).astype(p.dtype, copy=False)
                p.grad = Tensor(to_device(g.copy(), device_of(p.data)))
            offset += n

    def broadcast_params(self, params: Sequence[Any]) -> None:
        """Copy rank 0's values of these tensors (parameters, buffers) to every rank (the starting point must
        be the same everywhere)."""
        if self.size == 1:
            return
        for p in params:
            buf = np.ascontiguousarray(to_device(p.data, "cpu"))
            self.bcast_(buf)
            p.data[...] = to_device(buf, device_of(p.data))

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the ranks (the same keys everywhere)."""
        if self.size == 1:
            return values
        keys = sorted(values)
        arr = np.array([values[k] for k in keys], dtype=np.float64)
        self.allreduce_(arr)
        return {k: float(v) / self.size for k, v in zip(keys, arr, strict=True)}

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's picklable object, in rank order."""
        return [obj] if self.size == 1 else self.comm.allgather(obj)

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Rank `root`'s picklable object."""
        return obj if self.size == 1 else self.comm.bcast(obj, root=root)

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
                MPI = _mpi()  # noqa: N806
            except ImportError:
                raise RuntimeError(f"started by an MPI launcher but mpi4py is not installed: {INSTALL}") from None
            _WORLD = World(MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None)
        else:
            _WORLD = World()
    return _WORLD


def rank_environment(env: Mapping[str, str]) -> dict[str, str]:
    """RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE as PyTorch's launcher sets them, read from an MPI
    launcher's variables in `env`: only those `env` lacks and the launcher knows; {} without a launcher."""
    if not any(v in env for v in LAUNCHER_VARIABLES):
        return {}
    found = {}
    for name, sources in RANK_VARIABLES.items():
        value = next((env[s] for s in sources if s in env), None)
        if name not in env and value is not None:
            found[name] = value
    return found


# PyTorch scripts read RANK right after `import torch` (this module is imported with the package)
os.environ.update(rank_environment(os.environ))


# ---- torch.distributed's names ---------------------------------------------------------------------------------
class Backend:
    """torch's backend names; every one of them runs on MPI here."""

    NCCL, GLOO, MPI, UCC = "nccl", "gloo", "mpi", "ucc"


class ReduceOp(enum.Enum):
    """How `all_reduce` and `reduce` combine the ranks' values (the value is MPI's operation; AVG is a SUM
    divided by the number of ranks, for floating tensors)."""

    SUM = "SUM"
    AVG = "AVG"
    PRODUCT = "PROD"
    MIN = "MIN"
    MAX = "MAX"
    BAND = "BAND"
    BOR = "BOR"
    BXOR = "BXOR"


class Work:
    """What a collective returns with async_op=True. Collectives run to completion before they return,
    so `wait()` has nothing left to wait for."""

    def wait(self, timeout: Any = None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True

    def is_success(self) -> bool:
        return True


class _ProcessGroup:
    def __init__(self, w: World, backend: str, hook: Any = None) -> None:
        self.world, self.backend = w, backend
        self.hook, self.previous_hook = hook, sys.excepthook  # the exception hook installed, and the one before


_GROUP: _ProcessGroup | None = None
NOT_INITIALIZED = "Default process group has not been initialized, please make sure to call init_process_group."


def _backend_name(backend: str | None) -> str:
    """Check a backend as torch spells it ('nccl', 'gloo', 'mpi', 'cpu:gloo,cuda:nccl' or None)."""
    if backend is None:
        return "mpi"
    for part in str(backend).lower().split(","):
        name = part.split(":")[-1]
        if name not in (Backend.NCCL, Backend.GLOO, Backend.MPI, Backend.UCC):
            raise ValueError(f"init_process_group: unknown backend {backend!r}; expected 'nccl', 'gloo' or 'mpi' "
                             "(all run on MPI here)")
    return "mpi"


def _how_to_launch(n: int) -> str:
    """What to say when the environment asks for n processes but this one is not part of an MPI job."""
    missing = "" if is_mpi_available() else f", with mpi4py installed ({INSTALL})"
    return (f"WORLD_SIZE={n}, but this process was not started by an MPI launcher; minitransformer's collectives "
            f"run on MPI (torchrun's rendezvous is not supported): start it with `minitransformer run -n {n} "
            f"script.py` or `mpiexec -n {n} python script.py`{missing}")


def init_process_group(backend: str | None = None, init_method: str | None = None, timeout: Any = None,
                       world_size: int = -1, rank: int = -1, store: Any = None, group_name: str = "",
                       pg_options: Any = None, device_id: Any = None) -> None:
    """Join the job's processes, as torch.distributed.init_process_group.

    Every backend ('nccl', 'gloo', 'mpi', None) is MPI's COMM_WORLD: under an MPI launcher this process is
    its MPI rank, otherwise it is a world of one (no MASTER_ADDR needed). `world_size` and `rank`, and the
    WORLD_SIZE and RANK variables, are checked against MPI's; init_method, timeout, store, group_name,
    pg_options and device_id are accepted and not used. In a world of several ranks, an exception that
    nothing catches then stops every rank (MPI_Abort) instead of leaving the others waiting.
    """
    global _GROUP
    if _GROUP is not None:
        raise ValueError("trying to initialize the default process group twice!")
    name = _backend_name(backend)
    asked = {"world_size": world_size, "rank": rank}
    for var, key in (("WORLD_SIZE", "world_size"), ("RANK", "rank")):
        if asked[key] == -1 and os.environ.get(var, "").strip().lstrip("-").isdigit():
            asked[key] = int(os.environ[var])
    if not launched_by_mpi() and asked["world_size"] > 1:
        raise RuntimeError(_how_to_launch(asked["world_size"]))
    w = world()
    for key, actual in (("world_size", w.size), ("rank", w.rank)):
        if asked[key] not in (-1, actual):
            raise ValueError(f"init_process_group: {key} {asked[key]} (from the arguments or {key.upper()}), but "
                             f"MPI started this process as rank {w.rank} of {w.size}")
    _GROUP = _ProcessGroup(w, name, _abort_on_uncaught_exception(w) if w.size > 1 else None)
    if _GROUP.hook is not None:
        sys.excepthook = _GROUP.hook


def _abort_on_uncaught_exception(w: World) -> Callable[..., None]:
    """An exception hook that, after the traceback is printed, stops every rank (MPI_Abort), as torchrun
    stops the other workers: otherwise they would wait for this one in their next collective forever."""
    previous, pid = sys.excepthook, os.getpid()

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        previous(kind, value, tb)
        if os.getpid() == pid:  # not in a forked worker
            w.abort(f"{kind.__name__}: {value}" if str(value) else kind.__name__)

    return hook


def destroy_process_group(group: Any = None) -> None:
    """Leave the process group (MPI itself stays up until the process exits: it cannot start twice). What the
    rank printed is flushed now, while every rank is still running: a line still buffered when the process
    exits (stdout is a pipe to mpiexec, so Python buffers it) was sometimes missing from mpiexec's output."""
    global _GROUP
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    pg = _default_group(group)
    if pg.hook is not None and sys.excepthook is pg.hook:
        sys.excepthook = pg.previous_hook
    _GROUP = None


def is_available() -> bool:
    """True: the collectives always work, across MPI ranks or as the identity in one process."""
    return True


def is_initialized() -> bool:
    return _GROUP is not None


def is_mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401 (optional dependency)
    except ImportError:
        return False
    return True


def is_nccl_available() -> bool:
    return False


def _default_group(group: Any = None) -> _ProcessGroup:
    if group is not None:
        raise NotImplementedError("only the default process group (group=None) is supported")
    if _GROUP is None:
        raise ValueError(NOT_INITIALIZED)
    return _GROUP


def get_rank(group: Any = None) -> int:
    return _default_group(group).world.rank


def get_world_size(group: Any = None) -> int:
    return _default_group(group).world.size


def get_backend(group: Any = None) -> str:
    """'mpi', whichever name init_process_group was given."""
    return _default_group(group).backend


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> Work | None:
    _default_group(group).world.barrier()
    return Work() if async_op else None


def _check_tensor(fn: str, tensor: Any) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{fn}: expected a minitransformer Tensor, got {type(tensor).__name__}")


def _buffer(tensor: Tensor) -> np.ndarray:
    """A contiguous host copy of the tensor's values in a dtype every MPI reduces (bool as uint8, 16-bit
    floats as float32)."""
    host = np.array(to_device(tensor.data, "cpu"), order="C", copy=True)
    if host.dtype == np.bool_:
        return host.astype(np.uint8)
    if host.dtype.kind not in "iuf" or (host.dtype.kind == "f" and host.dtype.itemsize < 4):
        return host.astype(np.float32)
    return host


def _store(tensor: Tensor, buf: np.ndarray) -> None:
    """Write `buf` into the tensor in place (not recorded for autograd; its version counter moves)."""
    with no_grad():
        tensor.copy_(buf.astype(tensor.dtype, copy=False))


def _mpi_op(fn: str, op: Any, tensor: Tensor) -> str:
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{fn}: op must be a ReduceOp (SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR), got {op!r}")
    if op is ReduceOp.AVG and not is_floating(tensor.dtype):
        raise TypeError(f"{fn}: ReduceOp.AVG needs a floating tensor, this one is {tensor.dtype}")
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and tensor.dtype.kind not in "iub":
        raise TypeError(f"{fn}: {op.name} needs an integer or bool tensor, this one is {tensor.dtype}")
    return "SUM" if op is ReduceOp.AVG else op.value


def _reduce(fn: str, tensor: Tensor, op: Any, group: Any, on_rank: Callable[[World, np.ndarray, str], bool]) -> None:
    """The shared part of all_reduce and reduce: checks (the same with one rank as with many), the MPI call
    `on_rank` (which says whether this rank received the result), AVG's division, the copy back."""
    w = _default_group(group).world
    _check_tensor(fn, tensor)
    mpi_op = _mpi_op(fn, op, tensor)
    if w.size == 1:
        return
    buf = _buffer(tensor)
    if on_rank(w, buf, mpi_op):
        if op is ReduceOp.AVG:
            buf /= w.size
        _store(tensor, buf)


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group: Any = None, async_op: bool = False) -> Work | None:
    """Combine `tensor` across the ranks in place: afterwards every rank holds the SUM (AVG, MAX, ...)."""

    def on_rank(w: World, buf: np.ndarray, mpi_op: str) -> bool:
        w.allreduce_(buf, mpi_op)
        return True

    _reduce("all_reduce", tensor, op, group, on_rank)
    return Work() if async_op else None


def reduce(tensor: Tensor, dst: int = 0, op: ReduceOp = ReduceOp.SUM, group: Any = None,
           async_op: bool = False) -> Work | None:
    """Combine `tensor` across the ranks into rank `dst`'s tensor; the other ranks' tensors are unchanged."""

    def on_rank(w: World, buf: np.ndarray, mpi_op: str) -> bool:
        w.reduce_(buf, mpi_op, root=dst)
        return w.rank == dst

    _check_rank("reduce", dst, _default_group(group).world)
    _reduce("reduce", tensor, op, group, on_rank)
    return Work() if async_op else None


def _check_rank(fn: str, r: int, w: World) -> None:
    if not 0 <= r < w.size:
        raise ValueError(f"{fn}: rank {r} is not in this world of {w.size} process(es)")


def broadcast(tensor: Tensor, src: int = 0, group: Any = None, async_op: bool = False) -> Work | None:
    """Overwrite `tensor` on every rank with rank `src`'s."""
    w = _default_group(group).world
    _check_tensor("broadcast", tensor)
    _check_rank("broadcast", src, w)
    if w.size > 1:
        buf = _buffer(tensor)
        w.bcast_(buf, root=src)
        _store(tensor, buf)
    return Work() if async_op else None


def all_gather(tensor_list: list[Tensor], tensor: Tensor, group: Any = None, async_op: bool = False) -> Work | None:
    """Fill tensor_list[r] with rank r's `tensor`, on every rank (the list holds world-size tensors of its shape)."""
    w = _default_group(group).world
    _check_tensor("all_gather", tensor)
    if len(tensor_list) != w.size or any(not isinstance(t, Tensor) or t.shape != tensor.shape for t in tensor_list):
        raise ValueError(f"all_gather: tensor_list must hold {w.size} tensor(s) of shape {tensor.shape}")
    for t, values in zip(tensor_list, w.allgather(_buffer(tensor)), strict=True):
        _store(t, values)
    return Work() if async_op else None


def all_gather_object(object_list: list[Any], obj: Any, group: Any = None) -> None:
    """Fill object_list[r] with rank r's `obj` (any picklable object), on every rank."""
    w = _default_group(group).world
    if len(object_list) != w.size:
        raise ValueError(f"all_gather_object: object_list must have {w.size} element(s), it has {len(object_list)}")
    object_list[:] = w.gather(obj)


def broadcast_object_list(object_list: list[Any], src: int = 0, group: Any = None, device: Any = None) -> None:
    """Replace the elements of `object_list` on every rank with rank `src`'s (picklable objects)."""
    w = _default_group(group).world
    _check_rank("broadcast_object_list", src, w)
    object_list[:] = w.bcast_object(list(object_list), root=src)


from .porting import unsupported_attribute as _unsupported  # noqa: E402

__getattr__ = _unsupported(__name__)  # a missing torch name: one error that says so
