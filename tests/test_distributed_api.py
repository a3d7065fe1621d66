"""torch.distributed's names and DistributedDataParallel (minitransformer/distributed.py, nn/parallel.py), and
`minitransformer run`: every function in one process, then 2 ranks on loopback through mpiexec and through the
launcher (skipped without mpi4py and mpich: pip install 'minitransformer[mpi]').

Under mpiexec this file is also the ranks' program: `mpiexec -n 2 python -m tests.test_distributed_api OUT`
runs `rank_main`, which exercises the collectives and a DDP training loop written as PyTorch users write
it, and saves what it saw for the tests to check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

import minitransformer as mt
import minitransformer.nn.functional as F
from minitransformer import autograd
from minitransformer import distributed as dist
from minitransformer.__main__ import main as cli
from minitransformer.nn.parallel import DistributedDataParallel as DDP
from minitransformer.nn.utils import clip_grad_norm_
from minitransformer.training import launch

from .test_distributed import mpiexec, run
from .tolerances import FORWARD_F64

# the DDP run: K optimizer steps, each of A micro-batches of B examples per rank, on N ranks
K, A, B, N, SEED = 3, 2, 3, 2, 7
RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")


@pytest.fixture
def group():
    dist.init_process_group()
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


# ---- one process ---------------------------------------------------------------------------------------------
def test_every_collective_needs_init_process_group():
    t = mt.zeros(2)
    calls = [dist.get_rank, dist.get_world_size, dist.get_backend, dist.barrier, dist.destroy_process_group,
             lambda: dist.all_reduce(t), lambda: dist.broadcast(t, 0), lambda: dist.all_gather([t], t),
             lambda: dist.reduce(t, 0), lambda: dist.all_gather_object([None], 1),
             lambda: dist.broadcast_object_list([1]), lambda: DDP(mt.nn.Linear(2, 2))]
    assert not dist.is_initialized() and dist.is_available()
    for call in calls:
        with pytest.raises(ValueError, match="Default process group has not been initialized, please make sure to "
                                             "call init_process_group"):
            call()


@pytest.mark.parametrize("backend", [None, "nccl", "gloo", "mpi", "NCCL", "cpu:gloo,cuda:nccl"])
def test_any_backend_is_a_world_of_one_without_a_launcher(backend):
    dist.init_process_group(backend=backend, init_method="env://")
    try:
        assert dist.is_initialized()
        assert (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (0, 1, "mpi")
        with pytest.raises(ValueError, match="twice"):
            dist.init_process_group(backend)
    finally:
        dist.destroy_process_group()
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="unknown backend 'ncll'"):
        dist.init_process_group("ncll")


def test_collectives_are_the_identity_in_one_process(group):
    x = mt.tensor([1.5, -2.0, 4.0])
    for op in (dist.ReduceOp.SUM, dist.ReduceOp.AVG, dist.ReduceOp.MAX, dist.ReduceOp.MIN, dist.ReduceOp.PRODUCT):
        t = x.clone()
        assert dist.all_reduce(t, op=op) is None
        np.testing.assert_array_equal(t.numpy(), x.numpy())
        dist.reduce(t, dst=0, op=op)
        np.testing.assert_array_equal(t.numpy(), x.numpy())
    counts = mt.tensor([3, 4])
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    assert counts.tolist() == [3, 4]
    dist.broadcast(x, src=0)
    out = [mt.zeros(3)]
    dist.all_gather(out, x)
    np.testing.assert_array_equal(out[0].numpy(), x.numpy())
    objs = [None]
    dist.all_gather_object(objs, {"a": 1})
    assert objs == [{"a": 1}]
    lst = ["x", 2]
    dist.broadcast_object_list(lst, src=0)
    assert lst == ["x", 2]
    assert dist.barrier() is None
    work = dist.all_reduce(x, async_op=True)
    assert work.wait() and work.is_completed()


def test_collectives_check_their_arguments(group):
    with pytest.raises(TypeError, match="AVG needs a floating tensor"):
        dist.all_reduce(mt.tensor([1, 2]), op=dist.ReduceOp.AVG)
    with pytest.raises(TypeError, match="op must be a ReduceOp"):
        dist.all_reduce(mt.zeros(2), op="sum")
    with pytest.raises(TypeError, match="expected a minitransformer Tensor"):
        dist.all_reduce(np.zeros(2))
    with pytest.raises(ValueError, match="tensor_list must hold 1 tensor"):
        dist.all_gather([mt.zeros(2), mt.zeros(2)], mt.zeros(2))
    with pytest.raises(ValueError, match="rank 1 is not in this world of 1"):
        dist.broadcast(mt.zeros(2), src=1)
    with pytest.raises(NotImplementedError, match="default process group"):
        dist.all_reduce(mt.zeros(2), group=object())
    with pytest.raises(AttributeError, match="torch.distributed.new_group is not supported"):
        dist.new_group  # noqa: B018


def test_world_size_without_mpi_says_how_to_launch(monkeypatch):
    for v in dist.LAUNCHER_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match=r"WORLD_SIZE=2.*`minitransformer run -n 2 script.py` or `mpiexec -n 2 "
                                           r"python script.py`"):
        dist.init_process_group("nccl")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if mpi4py were not installed
    with pytest.raises(RuntimeError, match=r"with mpi4py installed \(pip install 'minitransformer\[mpi\]'"):
        dist.init_process_group()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="rank 1 .* MPI started this process as rank 0 of 1"):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_rank_variables_come_from_the_mpi_launcher():
    hydra = {"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    assert dist.rank_environment(hydra) == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                                                   "LOCAL_WORLD_SIZE": "2"}
    open_mpi = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "RANK": "1"}  # what is set already stays
    assert dist.rank_environment(open_mpi) == {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert dist.rank_environment({"SLURM_PROCID": "0"}) == {}  # no MPI launcher: nothing


# ---- the autograd hook DDP uses --------------------------------------------------------------------------------
class _Tap(autograd.Function):
    """Identity whose backward queues `seen` to record which gradients exist when the callback runs."""

    saves_inputs = ()

    def forward(self, x, fn):
        self.fn = fn
        return x

    def backward(self, dout):
        autograd.queue_callback(self.fn)
        return (dout,)


class _Fails(autograd.Function):
    def forward(self, x):
        return x

    def backward(self, dout):
        raise RuntimeError("backward failed")


def test_queue_callback_runs_once_backward_has_finished():
    w = mt.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    y = _Tap.apply(w * 3.0, fn=lambda: seen.append(w.grad.tolist()))
    (y * y).sum().backward()
    assert seen == [[18.0, 36.0]]  # d/dw (3w)^2 = 18w, complete when the callback ran
    with pytest.raises(RuntimeError, match="only be called during a backward pass"):
        autograd.queue_callback(lambda: None)
    with pytest.raises(RuntimeError, match="backward failed"):  # queued, then the pass fails: dropped
        _Tap.apply(_Fails.apply(w), fn=lambda: seen.append("dropped")).sum().backward()
    (w * 2.0).sum().backward()
    assert seen == [[18.0, 36.0]]


# ---- DDP in one process ----------------------------------------------------------------------------------------
class Net(mt.nn.Module):
    """A frozen projection, two trainable layers, a parameter nothing uses and a buffer, in float64."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.proj = mt.nn.Linear(4, 4)
        self.fc1 = mt.nn.Linear(4, 8)
        self.fc2 = mt.nn.Linear(8, 3)
        self.unused = mt.nn.Linear(2, 2)
        self.register_buffer("scale", mt.tensor([scale]))
        self.proj.requires_grad_(False)
        self.double()

    def forward(self, x):
        return self.fc2(mt.tanh(self.fc1(self.proj(x)))) * self.scale


def make_net(seed: int, scale: float = 1.0) -> Net:
    mt.manual_seed(seed)
    return Net(scale)


def batch(step: int, micro: int, rank: int) -> tuple[mt.Tensor, mt.Tensor]:
    rng = np.random.default_rng([SEED, step, micro, rank])
    return mt.tensor(rng.standard_normal((B, 4))), mt.tensor(rng.standard_normal((B, 3)))


def test_ddp_in_one_process_is_the_module(group, monkeypatch):
    net = make_net(0)
    model = DDP(net, device_ids=[0], find_unused_parameters=True)
    assert model.module is net
    assert list(model.state_dict()) == ["module." + k for k in net.state_dict()]
    syncs = []
    monkeypatch.setattr(dist.World, "allreduce_mean_grads", lambda self, params, keep_unused=False:
                        syncs.append(len(params)))
    x, y = batch(0, 0, 0)
    out = model(x)
    np.testing.assert_array_equal(out.numpy(), net(x).numpy())
    F.mse_loss(out, y).backward()
    grad = net.fc1.weight.grad.numpy().copy()
    net.zero_grad()
    F.mse_loss(net(x), y).backward()
    np.testing.assert_array_equal(net.fc1.weight.grad.numpy(), grad)
    assert syncs == [6]  # once, after backward, over the 6 trainable parameters (not the frozen proj's)
    with model.no_sync():
        F.mse_loss(model(x), y).backward()
    model.require_backward_grad_sync = False
    F.mse_loss(model(x), y).backward()
    model.require_backward_grad_sync = True
    with mt.no_grad():
        model(x)
    assert syncs == [6]
    logits = model(x)
    (F.mse_loss(logits, y) + logits.sum()).backward()  # two uses of the output: still one all-reduce
    assert syncs == [6, 6]


def test_ddp_needs_a_parameter_to_train(group):
    with pytest.raises(RuntimeError, match="doesn't have any parameter that requires a gradient"):
        DDP(mt.nn.Linear(2, 2).requires_grad_(False))


# ---- two ranks -------------------------------------------------------------------------------------------------
class Partly(mt.nn.Module):
    """Layer b is used on some ranks only."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = mt.nn.Linear(2, 1), mt.nn.Linear(2, 1)
        self.double()

    def forward(self, x, use_b):
        return self.a(x) + (self.b(x) if use_b else 0.0)


def train(model, raw: Net, rank: int, sync_style: str) -> tuple[list[float], list[bool]]:
    """K steps of AdamW, written as PyTorch scripts write them: nanoGPT's require_backward_grad_sync on the
    micro-steps, or the no_sync() context, and build-nanogpt's loss_accum averaged with ReduceOp.AVG.
    Returns the losses and, per step, whether only the used trainable parameters had gradients."""
    opt = mt.optim.AdamW([p for p in raw.parameters() if p.requires_grad], lr=0.05, weight_decay=0.1)
    losses, grads_as_one_process = [], []
    for step in range(K):
        loss_accum = mt.zeros(()).double()
        for micro in range(A):
            x, y = batch(step, micro, rank)
            if sync_style == "flag":
                model.require_backward_grad_sync = micro == A - 1
            with model.no_sync() if sync_style == "no_sync" and micro < A - 1 else nullcontext():
                loss = F.mse_loss(model(x), y) / A
            loss_accum += loss.detach()
            loss.backward()
        dist.all_reduce(loss_accum, op=dist.ReduceOp.AVG)
        losses.append(loss_accum.item())
        grads_as_one_process.append(raw.unused.weight.grad is None and raw.proj.weight.grad is None
                                    and raw.fc1.weight.grad is not None)
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return losses, grads_as_one_process


def reference() -> tuple[dict[str, np.ndarray], list[float]]:
    """One process, no DDP: each step one batch of every rank's micro-batches put together."""
    net = make_net(100)  # rank 0's weights
    opt = mt.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=0.05, weight_decay=0.1)
    losses = []
    for step in range(K):
        xs, ys = zip(*(batch(step, m, r) for m in range(A) for r in range(N)), strict=True)
        loss = F.mse_loss(net(mt.cat(xs)), mt.cat(ys))
        loss.backward()
        losses.append(loss.item())
        clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {k: v.numpy() for k, v in net.state_dict().items()}, losses


def rank_main(out: Path) -> None:
    """One rank's program under `mpiexec -n 2` (see test_collectives_and_ddp_under_mpiexec)."""
    seen = {k: os.environ.get(k) for k in RANK_VARS}  # set when minitransformer was imported
    dist.init_process_group(backend="nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    got: dict = {"env": seen, "rank": rank, "world": world}
    x = mt.tensor([1.0, -2.0, 3.0]) * (rank + 1)
    for op in ("SUM", "AVG", "MAX", "MIN", "PRODUCT"):
        t = x.clone()
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        got[op] = t.tolist()
    counts = mt.tensor([rank + 1])
    dist.all_reduce(counts)
    got["int_sum"] = counts.tolist()
    b = mt.tensor([10.0 * rank, 1.0])
    dist.broadcast(b, src=1)
    got["broadcast"] = b.tolist()
    parts = [mt.zeros(2) for _ in range(world)]
    dist.all_gather(parts, mt.tensor([rank, 2.0 * rank]))
    got["all_gather"] = [p.tolist() for p in parts]
    objs = [None] * world
    dist.all_gather_object(objs, {"rank": rank})
    got["all_gather_object"] = objs
    lst = [f"from {rank}", rank]
    dist.broadcast_object_list(lst, src=0)
    got["broadcast_object_list"] = lst
    r = mt.tensor([rank + 1.0])
    dist.reduce(r, dst=0)
    got["reduce"] = r.tolist()
    if rank == 1:
        time.sleep(0.5)
    t0 = time.perf_counter()
    dist.barrier()
    got["barrier_wait"] = time.perf_counter() - t0
    for style in ("flag", "no_sync"):
        net = make_net(100 + rank, scale=1.0 + rank)  # different weights and buffer: DDP starts from rank 0's
        model = DDP(net)
        got[f"losses_{style}"], got[f"grads_{style}"] = train(model, net, rank, style)
        np.savez(out / f"params-{style}-{rank}.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    # a backward inside no_sync leaves each rank its own gradient; the next synchronised one averages the sums
    x, y = batch(0, 0, rank)
    with model.no_sync():
        F.mse_loss(model(x), y).backward()
    local = [mt.zeros(3, 8).double() for _ in range(world)]
    dist.all_gather(local, net.fc2.weight.grad)
    F.mse_loss(model(x), y).backward()  # the same batch again: each rank holds twice its gradient, then the mean
    synced = [mt.zeros(3, 8).double() for _ in range(world)]
    dist.all_gather(synced, net.fc2.weight.grad)
    got["no_sync_differs"] = not np.array_equal(local[0].numpy(), local[1].numpy())
    got["synced_equal"] = np.array_equal(synced[0].numpy(), synced[1].numpy())
    mean_of_sums = sum(2 * g.numpy() for g in local) / world
    got["synced_error"] = float(np.abs(synced[rank].numpy() - mean_of_sums).max())
    # a parameter that only rank 1 used: its gradient averaged with rank 0's zeros
    mt.manual_seed(3)
    partly = DDP(Partly())
    partly(mt.ones(1, 2).double(), use_b=rank == 1).sum().backward()
    got["partly"] = [partly.module.a.weight.grad.tolist(), partly.module.b.weight.grad.tolist()]
    dist.destroy_process_group()
    (out / f"rank-{rank}.json").write_text(json.dumps(got))


@pytest.mark.slow
def test_collectives_and_ddp_under_mpiexec(tmp_path):
    exe = mpiexec()
    r = run([exe, "-n", "2", sys.executable, "-m", "tests.test_distributed_api", str(tmp_path)], timeout=120)
    assert r.returncode == 0, r.stderr
    got = [json.loads((tmp_path / f"rank-{k}.json").read_text()) for k in (0, 1)]
    for k, g in enumerate(got):
        assert g["env"] == {"RANK": str(k), "LOCAL_RANK": str(k), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
        assert (g["rank"], g["world"]) == (k, 2)
        assert g["SUM"] == [3.0, -6.0, 9.0] and g["AVG"] == [1.5, -3.0, 4.5] and g["PRODUCT"] == [2.0, 8.0, 18.0]
        assert g["MAX"] == [2.0, -2.0, 6.0] and g["MIN"] == [1.0, -4.0, 3.0] and g["int_sum"] == [3]
        assert g["broadcast"] == [10.0, 1.0] and g["all_gather"] == [[0.0, 0.0], [1.0, 2.0]]
        assert g["all_gather_object"] == [{"rank": 0}, {"rank": 1}] and g["broadcast_object_list"] == ["from 0", 0]
        assert g["no_sync_differs"] and g["synced_equal"] and g["synced_error"] < 1e-12
        assert g["partly"] == [[[1.0, 1.0]], [[0.5, 0.5]]]
    assert got[0]["reduce"] == [3.0] and got[1]["reduce"] == [2.0]  # only dst receives the sum
    assert got[0]["barrier_wait"] > 0.3  # rank 0 waited for rank 1's sleep
    want, want_losses = reference()
    for style in ("flag", "no_sync"):
        ranks = [np.load(tmp_path / f"params-{style}-{k}.npz") for k in (0, 1)]
        assert sorted(ranks[0]) == sorted("module." + k for k in want)
        for k, v in want.items():
            np.testing.assert_array_equal(ranks[0]["module." + k], ranks[1]["module." + k], err_msg=k)
            np.testing.assert_allclose(ranks[0]["module." + k], v, **FORWARD_F64, err_msg=f"{style} {k}")
        for g in got:
            np.testing.assert_allclose(g[f"losses_{style}"], want_losses, **FORWARD_F64)
            assert g[f"grads_{style}"] == [True] * K  # unused everywhere and frozen: no gradient, as in one process


LAUNCHED = """
import json, os, sys, time
seen = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                       "MASTER_PORT")}
rank = int(os.environ["RANK"])  # before anything imports minitransformer
from minitransformer.distributed import all_reduce, barrier, destroy_process_group, get_rank, init_process_group
import minitransformer as mt

out, mode = sys.argv[1], sys.argv[2]
init_process_group(backend="gloo")
t = mt.tensor([rank + 1.0])
all_reduce(t)
seen.update(mpi_rank=get_rank(), total=t.item(), argv=sys.argv[2:])
if mode == "fail" and rank == 1:
    raise RuntimeError("rank 1 gives up")
if mode == "hang":
    open(os.path.join(out, f"pid-{rank}"), "w").write(str(os.getpid()))
    if rank == 1:
        time.sleep(300)
    barrier()
open(os.path.join(out, f"seen-{rank}.json"), "w").write(json.dumps(seen))
destroy_process_group()
"""


def launcher(tmp_path: Path, *args: str) -> list[str]:
    mpiexec()
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    return [sys.executable, "-m", "minitransformer", "run", *args, str(script), str(tmp_path)]


@pytest.mark.slow
def test_run_sets_torchruns_variables_before_the_script_starts(tmp_path):
    r = run([*launcher(tmp_path, "--nproc_per_node=2"), "ok", "--lr=3"], timeout=120)
    assert r.returncode == 0, r.stderr
    for k in (0, 1):
        seen = json.loads((tmp_path / f"seen-{k}.json").read_text())
        assert seen == {"RANK": str(k), "LOCAL_RANK": str(k), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "mpi_rank": k, "total": 3.0,
                        "argv": ["ok", "--lr=3"]}


@pytest.mark.slow
def test_run_fails_when_a_rank_fails(tmp_path):
    r = run([*launcher(tmp_path, "-n", "2"), "fail"], timeout=60)
    assert r.returncode != 0
    assert "RuntimeError: rank 1 gives up" in r.stderr
    assert "error on rank 1 of 2: RuntimeError: rank 1 gives up; stopping all ranks" in r.stderr


@pytest.mark.slow
def test_ctrl_c_stops_every_rank(tmp_path):
    """SIGINT to the launcher alone (as `kill -INT`): rank 1 sleeping, rank 0 inside an MPI barrier."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    # its own session, so that a failure here can stop the whole tree; SIGINT's default restored, in case
    # this test runs from a shell that ignores it
    proc = subprocess.Popen([*launcher(tmp_path, "-n", "2"), "hang"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids = [tmp_path / f"pid-{k}" for k in (0, 1)]
    deadline = time.monotonic() + 60
    try:
        while not all(p.exists() and p.read_text() for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    ranks = [int(p.read_text()) for p in pids]
    while any(Path(f"/proc/{pid}").exists() for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in ranks)


def test_run_command_line(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        cli(["run", "--help"])
    text = capsys.readouterr().out
    assert "--nproc_per_node" in text and "(default: 1)" in text and "(default: 29500)" in text
    cmd = launch.launch_command("mpiexec", 2, ["python", "s.py", "a"])
    env = cmd[3]  # each rank goes through `env RANK=r LOCAL_RANK=r python ...`
    assert Path(env).name == "env"
    assert cmd == ["mpiexec", "-n", "1", env, "RANK=0", "LOCAL_RANK=0", "python", "s.py", "a",
                   ":", "-n", "1", env, "RANK=1", "LOCAL_RANK=1", "python", "s.py", "a"]
    script = tmp_path / "s.py"
    script.write_text("")
    assert cli(["run", "-n", "2", str(tmp_path / "missing.py")]) == 2
    assert cli(["run", "--nnodes", "2", str(script)]) == 2
    monkeypatch.setattr(launch, "find_mpiexec", lambda: None)
    assert cli(["run", "-n", "2", str(script)]) == 2
    err = capsys.readouterr().err
    assert "missing.py: no such file" in err and "--nnodes 2" in err and "needs MPI's mpiexec" in err


if __name__ == "__main__":
    rank_main(Path(sys.argv[1]))
