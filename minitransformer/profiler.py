"""`mt.profiler`: where a step's time goes, op by op, with torch.profiler's names.

    with mt.profiler.profile(record_shapes=True) as prof:
        with mt.profiler.record_function("forward"):
            loss = model(x, y)[1]
        loss.backward()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    prof.export_chrome_trace("trace.json")        # open in Perfetto or chrome://tracing

What is recorded, while a `profile` block is open (and nothing at all outside one):
  - every op's forward (`Function.apply`, event named after the op: `Linear`, `QKVAttention`, ...) and its
    backward (`LinearBackward`, ...) separately, with the wall-clock time of each call;
  - the regions a user marks with `record_function(name)` (the training loop marks forward, backward and
    optimizer) and the optimizer's fused update (`Optimizer.step#AdamW.step`);
  - per op: the input shapes (record_shapes=True), the kernel tier that ran it (backend.tier_of), the FLOPs
    and the bytes it moved, both counted from the shapes (`op_cost` below says how).

Times: `self` is an event's time less the time of the events recorded inside it (a region's self time is the
Python between its ops); `total` includes them. `key_averages()` groups events by name (and input shapes,
with group_by_input_shape=True), as torch.profiler does, and `table()` prints them with torch's columns plus
the share of the profiled wall-clock time ("% step"), FLOPs, GFLOP/s, GB/s, and the fraction of this
machine's roofline the op reached ("% roof": achieved GFLOP/s over min(peak GFLOP/s, intensity x bandwidth),
peaks measured by `machine_peak()` on first use). docs/training.md explains the columns.

The profiler costs nothing when off: `Function.apply` and the backward engine test one module variable,
which is None outside a profile block (benchmarks/roofline.py --overhead measures it).
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from . import autograd, backend
from .io.atomic import atomic_write_bytes


class ProfilerActivity(Enum):
    """torch.profiler.ProfilerActivity: CPU is what is recorded; CUDA is accepted (CuPy ops are timed on
    the host, which waits for each kernel only where the op itself synchronises)."""

    CPU = "cpu"
    CUDA = "cuda"


# --------------------------------------------------------------------------------------------------- costs
# FLOPs per element of the output for the elementwise and row-wise ops: what the arithmetic does, with exp,
# log, erf and tanh counted as one FLOP each (the convention of roofline plots; their real cost is higher, so
# these ops' GFLOP/s understate the work and their GB/s is the figure to read).
FLOPS_PER_ELEMENT: dict[str, tuple[int, int]] = {   # op: (forward, backward) per output element
    "Add": (1, 0), "Sub": (1, 1), "Mul": (1, 2), "Div": (1, 3), "Neg": (1, 1), "Exp": (1, 1), "Log": (1, 1),
    "Sqrt": (1, 2), "Rsqrt": (2, 3), "Tanh": (1, 3), "Sigmoid": (3, 3), "Abs": (1, 1), "ReLU": (1, 1),
    "Maximum": (1, 1), "Minimum": (1, 1), "Clamp": (2, 2), "Pow": (2, 4), "PowScalar": (1, 3),
    "RPowScalar": (1, 2), "Dropout": (1, 1), "MaskedFill": (1, 1), "Where": (1, 1),
    "GELU": (8, 12), "BiasGELU": (9, 13),               # 0.5 x (1 + erf(x / sqrt 2)); backward adds the density
    "Softmax": (4, 4), "LogSoftmax": (4, 3),            # max, subtract, exp, sum, divide (per element)
    "LayerNorm": (8, 12),                               # mean, centre, square, sum, scale, shift
    "Sum": (1, 0), "Mean": (1, 0), "Var": (3, 3), "Std": (3, 3), "LogSumExp": (4, 3),
}


def _nbytes(arrays: Any) -> int:
    return sum(int(a.nbytes) for a in arrays if hasattr(a, "nbytes"))


def _attention_flops(lead: int, L: int, S: int, E: int, Ev: int, causal: bool) -> tuple[float, float]:
    """softmax(q k^T) v for `lead` (batch x heads) problems: two GEMMs forward; backward recomputes q k^T and
    runs four more (dV, dP, dQ, dK), 2.5x the forward. A causal mask leaves about half of the products."""
    f = 2.0 * lead * L * S * (E + Ev)
    if causal and L == S:
        f *= (L + 1) / (2 * L)
    return f, 2.5 * f


def op_cost(name: str, inputs: list[Any], out: Any, kwargs: dict[str, Any], needs: list[bool]) -> tuple[float, float]:
    """(forward FLOPs, backward FLOPs) of one call of op `name`, from its arrays' shapes; `needs[i]`: whether
    input i takes a gradient. Matrix products count 2 FLOPs per multiply-add (2MNK); the backward of a product
    is one product of the same size per input that needs a gradient. Elementwise ops use FLOPS_PER_ELEMENT; ops
    not listed (copies, indexing, views) count 0: they only move memory."""
    if name == "Linear":
        x, w = inputs[0], inputs[1]
        n = x.size // x.shape[-1]
        gemm = 2.0 * n * w.shape[0] * x.shape[-1]                        # (n, in) @ (in, out)
        bias = n * w.shape[0] if len(inputs) > 2 else 0
        return gemm + bias, gemm * (needs[0] + needs[1]) + (bias if len(needs) > 2 and needs[2] else 0)
    if name == "QLinear":                                                  # the integer weights take no gradient
        x = inputs[0]
        gemm = 2.0 * (x.size // x.shape[-1]) * out.shape[-1] * x.shape[-1]
        return gemm, gemm * needs[0]
    if name == "MatMul":
        gemm = 2.0 * out.size * inputs[0].shape[-1]
        return gemm, gemm * (needs[0] + needs[1])
    if name == "Einsum":
        # every combination of the letters' sizes is one multiply-add; each input's gradient is another einsum
        # of the same letters
        terms = kwargs["terms"]
        sizes = {c: n for t, a in zip(terms, inputs, strict=False) if a.ndim == len(t)
                 for c, n in zip(t, a.shape, strict=True)}
        letters = {c for t in terms for c in t} | set(kwargs["out_term"])
        n = 1.0
        for c in letters:
            n *= sizes.get(c, 1)
        f = 2.0 * n if len(terms) > 1 else float(max(a.size for a in inputs))
        return f, f * sum(needs)
    if name == "Attention":
        q, k, v = inputs[:3]
        lead = q.size // (q.shape[-1] * q.shape[-2])
        return _attention_flops(lead, q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1], bool(kwargs.get("causal")))
    if name == "QKVAttention":
        B, T, C3 = inputs[0].shape
        nh = int(kwargs["n_head"])
        hs = C3 // (3 * nh)
        return _attention_flops(B * nh, T, T, hs, hs, bool(kwargs.get("causal")))
    if name == "CrossEntropy":
        logits = inputs[0]
        return 4.0 * logits.size, 3.0 * logits.size     # log-softmax of every row, then pick; backward p - y
    per = FLOPS_PER_ELEMENT.get(name)
    if per is None or out is None or not hasattr(out, "size"):
        return 0.0, 0.0
    reduces = name in ("Sum", "Mean", "Var", "Std", "LogSumExp")   # work per input element, not per output one
    n = max((getattr(a, "size", 0) for a in inputs), default=0) if reduces else out.size
    return float(per[0] * n), float(per[1] * n)


# ---------------------------------------------------------------------------------------------- the events
@dataclass
class Event:
    """One recorded interval. Times in microseconds from the profile's start, as torch's FunctionEvent."""

    name: str
    kind: str                       # "op" (an op's forward), "backward", "region" (record_function), "step"
    start_us: float
    end_us: float = 0.0
    thread: int = 0
    child_us: float = 0.0           # time of the events recorded inside this one
    input_shapes: tuple[tuple[int, ...], ...] = ()
    flops: float = 0.0
    bytes: float = 0.0
    tier: str = ""

    @property
    def cpu_time_total(self) -> float:
        return self.end_us - self.start_us

    @property
    def self_cpu_time_total(self) -> float:
        return self.cpu_time_total - self.child_us


@dataclass
class FunctionEventAvg:
    """Events of one key added up (torch.profiler's FunctionEventAvg): times in microseconds."""

    key: str
    input_shapes: str = ""
    count: int = 0
    cpu_time_total: float = 0.0
    self_cpu_time_total: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    tiers: set[str] = field(default_factory=set)
    kind: str = "op"

    @property
    def cpu_time(self) -> float:
        """Mean time per call (µs)."""
        return self.cpu_time_total / max(self.count, 1)

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s over the self time (0 for ops that count no FLOPs)."""
        return self.flops / (self.self_cpu_time_total * 1e3) if self.self_cpu_time_total > 0 else 0.0

    @property
    def gbps(self) -> float:
        """Achieved GB/s over the self time."""
        return self.bytes / (self.self_cpu_time_total * 1e3) if self.self_cpu_time_total > 0 else 0.0

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved (the x axis of a roofline)."""
        return self.flops / self.bytes if self.bytes else math.inf

    def roof_fraction(self, peak: dict[str, float]) -> float | None:
        """Achieved over attainable: GFLOP/s over min(peak, intensity x bandwidth), or, for an op that counts
        no FLOPs, GB/s over the bandwidth. None when the op moved nothing."""
        if self.flops:
            attainable = min(peak["gflops"], self.intensity * peak["gbps"])
            return self.gflops / attainable
        if self.bytes:
            return self.gbps / peak["gbps"]
        return None


class EventList(list):
    """A list of FunctionEventAvg (or Event) with torch's `table()`."""

    def __init__(self, items: Any = (), wall_us: float = 0.0, peak: Callable[[], dict[str, float]] | None = None):
        super().__init__(items)
        self.wall_us = wall_us
        self._peak = peak

    def total_average(self) -> FunctionEventAvg:
        total = FunctionEventAvg("Total")
        for e in self:
            total.count += e.count
            total.cpu_time_total += e.cpu_time_total
            total.self_cpu_time_total += e.self_cpu_time_total
            total.flops += e.flops
            total.bytes += e.bytes
        return total

    def table(self, sort_by: str | None = None, row_limit: int = 100, max_name_column_width: int = 55,
              header: str | None = None, top_level_events_only: bool = False, peak: bool = True) -> str:
        """torch.profiler's table: one row per key, sorted by `sort_by` (self_cpu_time_total, cpu_time_total,
        cpu_time, count, flops; descending), at most `row_limit` rows. `peak=False` leaves out the "% roof"
        column (and the half-second measurement of the machine's peak it needs)."""
        rows = list(self)
        if sort_by is not None:
            if not rows or not hasattr(rows[0], sort_by):
                valid = "self_cpu_time_total, cpu_time_total, cpu_time, count, flops, bytes"
                if rows:
                    raise ValueError(f"sort_by={sort_by!r} is not a column; choose from {valid}")
            rows.sort(key=lambda e: getattr(e, sort_by), reverse=True)
        rows = rows[:row_limit] if row_limit is not None and row_limit >= 0 else rows
        self_total = sum(e.self_cpu_time_total for e in self) or 1.0
        wall = self.wall_us or self_total
        machine = self._peak() if peak and self._peak is not None else None
        shapes = any(e.input_shapes for e in rows)
        width = min(max([len(e.key) for e in rows] + [4]), max_name_column_width)
        cols = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "# of Calls",
                "% step", "FLOPs", "GFLOP/s", "GB/s"] + (["% roof"] if machine else []) + ["Tier"]
        cols += ["Input Shapes"] if shapes else []
        widths = [width] + [12] * (len(cols) - 1 - (1 if shapes else 0)) + ([40] if shapes else [])
        line = "  ".join("-" * w for w in widths)
        out = [header] if header else []
        out += [line, _row(cols, widths), line]
        for e in rows:
            roof = e.roof_fraction(machine) if machine else None
            cells = [_clip(e.key, width), f"{100 * e.self_cpu_time_total / self_total:.2f}%",
                     _fmt_us(e.self_cpu_time_total), f"{100 * e.cpu_time_total / self_total:.2f}%",
                     _fmt_us(e.cpu_time_total), _fmt_us(e.cpu_time), str(e.count),
                     f"{100 * e.self_cpu_time_total / wall:.2f}%", _fmt_count(e.flops),
                     f"{e.gflops:.1f}" if e.flops else "--", f"{e.gbps:.1f}" if e.bytes else "--"]
            if machine:
                cells.append("--" if roof is None else f"{100 * roof:.0f}%")
            cells.append(",".join(sorted(e.tiers)) or "--")
            if shapes:
                cells.append(_clip(e.input_shapes, 40))
            out.append(_row(cells, widths))
        out.append(line)
        out.append(f"Self CPU time total: {_fmt_us(self_total)}")
        if self.wall_us:
            out.append(f"Wall time profiled: {_fmt_us(self.wall_us)} (the \"% step\" column's denominator)")
        if machine:
            out.append(f"Machine peak ({machine['threads']} BLAS thread(s)): {machine['gflops']:.1f} GFLOP/s SGEMM, "
                       f"{machine['gbps']:.1f} GB/s memory (\"% roof\": achieved over the roofline at the op's "
                       "intensity)")
        return "\n".join(out)


def _row(cells: list[str], widths: list[int]) -> str:
    """The name left-aligned, every other cell right-aligned, as torch's table."""
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 3] + "..."


def _fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def _fmt_count(n: float) -> str:
    if not n:
        return "--"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


# --------------------------------------------------------------------------------------- the machine's peak
_PEAKS: dict[int, dict[str, float]] = {}


def blas_threads() -> int:
    """The threads NumPy's BLAS uses now (threadpoolctl when installed, else the core count)."""
    try:
        from threadpoolctl import threadpool_info  # optional: without it, assume every core
    except ImportError:
        return os.cpu_count() or 1
    nums = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(nums) if nums else os.cpu_count() or 1


def machine_peak(n: int = 1024, repeats: int = 9) -> dict[str, float]:
    """This machine's ceilings at the current BLAS thread count, measured once per count: SGEMM GFLOP/s of an
    (n x n) @ (n x n) float32 product, and the memory bandwidth as the faster of copying a 64 MiB float32 array
    (bytes read plus written) and summing it (bytes read), each over one NumPy stream. A ceiling is what the
    machine can do, so each figure is the best of `repeats` runs after a warm-up (a median would put the
    machine's own noise into the ceiling, and ops would then appear above their roof)."""
    threads = blas_threads()
    if threads not in _PEAKS:
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        c = a @ b
        src = np.ones(16 << 20, np.float32)             # 64 MiB: far beyond the caches
        dst = np.empty_like(src)
        np.copyto(dst, src)
        gemm, copy, read = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            t1 = time.perf_counter()
            np.copyto(dst, src)
            t2 = time.perf_counter()
            src.sum()
            t3 = time.perf_counter()
            gemm.append(t1 - t0)
            copy.append(t2 - t1)
            read.append(t3 - t2)
        _PEAKS[threads] = {"gflops": 2.0 * n ** 3 / min(gemm) / 1e9,
                           "gbps": max(2.0 * src.nbytes / min(copy), src.nbytes / min(read)) / 1e9,
                           "threads": threads}
    return _PEAKS[threads]


# ------------------------------------------------------------------------------------------- the recorder
class _Stack(threading.local):
    def __init__(self) -> None:
        self.open: list[Event] = []


class profile:
    """torch.profiler.profile: a context manager that records ops and regions while open.

    Accepted as in PyTorch: activities, record_shapes, profile_memory, with_stack, with_flops, with_modules
    (FLOPs are always counted; memory, stacks and modules are not recorded here), on_trace_ready (called with
    the profiler on exit). `schedule` is not supported: profile the steps you want inside the block, and call
    `prof.step()` at the end of each one, which marks it as a `ProfilerStep#N` region as torch does."""

    def __init__(self, activities: Any = None, schedule: Any = None,
                 on_trace_ready: Callable[[profile], Any] | None = None, record_shapes: bool = False,
                 profile_memory: bool = False, with_stack: bool = False, with_flops: bool = False,
                 with_modules: bool = False, enabled: bool = True) -> None:
        if schedule is not None:
            raise ValueError("mt.profiler.profile: schedule= is not supported; open the profile around the steps to "
                             "record and call prof.step() after each")
        self.record_shapes = record_shapes
        self.on_trace_ready = on_trace_ready
        self.enabled = enabled
        self.events: list[Event] = []
        self._stack = _Stack()
        self._t0 = 0
        self._wall = (0.0, 0.0)
        self._step_no = 0
        self._step_event: Event | None = None
        self._lock = threading.Lock()

    # the clock: microseconds since the profile opened
    def _now(self) -> float:
        return (time.perf_counter_ns() - self._t0) / 1e3

    def __enter__(self) -> profile:
        if not self.enabled:
            return self
        if autograd._PROFILER is not None:
            raise RuntimeError("a profiler is already recording; profiles do not nest")
        self._t0 = time.perf_counter_ns()
        self._wall = (0.0, 0.0)
        autograd._PROFILER = self
        self._open_step()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled or autograd._PROFILER is not self:
            return
        self._close_step(final=True)
        autograd._PROFILER = None
        if self.on_trace_ready is not None:
            self.on_trace_ready(self)

    def start(self) -> None:
        self.__enter__()

    def stop(self) -> None:
        self.__exit__(None, None, None)

    # steps: prof.step() closes the current ProfilerStep#N region and opens the next
    def _open_step(self) -> None:
        self._step_event = self._begin(f"ProfilerStep#{self._step_no}", "step")

    def _close_step(self, final: bool = False) -> None:
        ev = self._step_event
        if ev is None:
            return
        self._step_event = None
        self._end(ev)
        if final and self._step_no and ev.child_us == 0:
            with self._lock:
                self.events.remove(ev)                     # the empty step opened by the last prof.step()
            return
        self._wall = (0.0, ev.end_us)                      # the profiled steps: from the block's start to here

    def step(self) -> None:
        """Mark the end of one training step (torch.profiler's prof.step())."""
        if autograd._PROFILER is not self:
            return
        self._close_step()
        self._step_no += 1
        self._open_step()

    # the event stack, per thread
    def _begin(self, name: str, kind: str) -> Event:
        ev = Event(name, kind, self._now(), thread=threading.get_ident())
        self._stack.open.append(ev)
        return ev

    def _end(self, ev: Event) -> None:
        ev.end_us = self._now()
        stack = self._stack.open
        if ev in stack:
            while stack[-1] is not ev:                      # regions left without their exit (an exception)
                stack.pop()
            stack.pop()
        if stack:
            stack[-1].child_us += ev.cpu_time_total
        with self._lock:
            self.events.append(ev)

    def _overhead(self, t0: int) -> None:
        """Charge the profiler's own bookkeeping since perf_counter_ns() t0 to no one: the enclosing event's
        child time grows by it, so a region's self time stays the Python between its ops."""
        stack = self._stack.open
        if stack:
            stack[-1].child_us += (time.perf_counter_ns() - t0) / 1e3

    # hooks called by autograd while this profile is active
    def run_op(self, cls: type, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ev = self._begin(cls.__name__, "op")
        try:
            out = cls._apply(inputs, kwargs)
        finally:
            self._end(ev)
        t0 = time.perf_counter_ns()
        arrays = [t.data for t in inputs]
        data = out.data
        if self.record_shapes:
            ev.input_shapes = tuple(tuple(a.shape) for a in arrays)
        ctx = out._ctx
        fwd, bwd = op_cost(cls.__name__, arrays, data, kwargs, [t.requires_grad for t in inputs])
        ev.flops = fwd
        ev.bytes = 0 if cls.is_view else _nbytes(arrays) + int(getattr(data, "nbytes", 0))
        ev.tier = _tier(cls, arrays)
        if ctx is not None:
            ctx._prof = (bwd, ev.input_shapes, ev.tier)  # what the backward event reports
        self._overhead(t0)
        return out

    def run_backward(self, ctx: Any, dout: Any) -> tuple[Any, ...]:
        name = type(ctx).__name__
        saved = getattr(ctx, "_prof", (0.0, (), ""))
        ins = ctx.inputs
        ev = self._begin(name + "Backward", "backward")
        try:
            grads = ctx.backward(dout)
        finally:
            self._end(ev)
        t0 = time.perf_counter_ns()
        ev.flops, ev.input_shapes, ev.tier = saved
        # bytes: dout and what the op saved are read, each new gradient written; a gradient passed through
        # unchanged (Add's) costs nothing
        saved_inputs = range(len(ins)) if ctx.saves_inputs is None else ctx.saves_inputs
        written = [g for g in grads if g is not None and g is not dout]
        if not ctx.is_view and written:
            ev.bytes = int(dout.nbytes) + _nbytes(ins[i].data for i in saved_inputs) + _nbytes(written)
        self._overhead(t0)
        return grads

    def region(self, name: str, kind: str = "region") -> Event:
        return self._begin(name, kind)

    # ----------------------------------------------------------------------------------------- results
    def _wall_us(self) -> float:
        return self._wall[1] - self._wall[0]

    def events_list(self) -> EventList:
        """Every recorded event (torch's prof.events())."""
        return EventList(self.events, self._wall_us(), machine_peak)

    def key_averages(self, group_by_input_shape: bool = False) -> EventList:
        """Events grouped by name (and input shapes), added up; the step markers are left out."""
        groups: dict[tuple[str, str], FunctionEventAvg] = {}
        for e in self.events:
            if e.kind == "step":
                continue
            shapes = str([list(s) for s in e.input_shapes]) if group_by_input_shape else ""
            g = groups.get((e.name, shapes))
            if g is None:
                g = groups[(e.name, shapes)] = FunctionEventAvg(e.name, shapes, kind=e.kind)
            g.count += 1
            g.cpu_time_total += e.cpu_time_total
            g.self_cpu_time_total += e.self_cpu_time_total
            g.flops += e.flops
            g.bytes += e.bytes
            if e.tier:
                g.tiers.add(e.tier)
        return EventList(groups.values(), self._wall_us(), machine_peak)

    def export_chrome_trace(self, path: str | os.PathLike[str]) -> None:
        """The Trace Event Format JSON that Perfetto (ui.perfetto.dev) and chrome://tracing open: one complete
        ("X") event per recorded interval, µs timestamps, args with shapes, FLOPs, bytes and tier."""
        pid = os.getpid()
        threads = sorted({e.thread for e in self.events})
        tid = {t: i for i, t in enumerate(threads)}
        cat = {"op": "cpu_op", "backward": "cpu_op", "region": "user_annotation", "step": "cpu_instant_event"}
        trace: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                                        "args": {"name": "minitransformer"}}]
        trace += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid[t],
                   "args": {"name": "main" if t == threading.main_thread().ident else f"thread {tid[t]}"}}
                  for t in threads]
        for e in sorted(self.events, key=lambda e: (e.start_us, -e.end_us)):
            args: dict[str, Any] = {}
            if e.input_shapes:
                args["Input Shapes"] = [list(s) for s in e.input_shapes]
            if e.flops:
                args["FLOPs"] = e.flops
            if e.bytes:
                args["Bytes"] = e.bytes
            if e.tier:
                args["Tier"] = e.tier
            trace.append({"name": e.name, "cat": cat[e.kind], "ph": "X", "ts": round(e.start_us, 3),
                          "dur": round(e.cpu_time_total, 3), "pid": pid, "tid": tid[e.thread], "args": args})
        text = json.dumps({"traceEvents": trace, "displayTimeUnit": "ms",
                           "otherData": {"producer": "minitransformer.profiler"}})
        atomic_write_bytes(Path(path), text.encode())


def _tier(cls: type, arrays: list[Any]) -> str:
    """The tier of the op's first kernel, or "numpy" for ops written as plain array code."""
    if cls.kernels:
        return backend.tiers_of(cls.kernels[:1], arrays[0] if arrays else None)[0]
    return "cupy" if arrays and type(arrays[0]).__module__.startswith("cupy") else "numpy"


class record_function:
    """Mark a region (`with record_function("forward"):` or as a decorator): recorded as an event of its own,
    its ops nested inside, while a profile is open; nothing otherwise."""

    def __init__(self, name: str, args: str | None = None) -> None:
        self.name = name
        self._event: Event | None = None
        self._prof: profile | None = None

    def __enter__(self) -> record_function:
        prof = autograd._PROFILER
        if prof is not None:
            self._prof, self._event = prof, prof.region(self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._event is not None and self._prof is not None:
            self._prof._end(self._event)
            self._event = self._prof = None

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with record_function(self.name):
                return fn(*args, **kwargs)

        return wrapped


class kernel_region:
    """A region for a kernel called outside any op (the optimizer's fused update), with its FLOPs and bytes;
    a no-op context when no profile is open."""

    def __init__(self, name: str, flops: float, nbytes: float, tier: str) -> None:
        self.args = (name, flops, nbytes, tier)
        self._event: Event | None = None
        self._prof: profile | None = None

    def __enter__(self) -> None:
        prof = autograd._PROFILER
        if prof is not None:
            name, flops, nbytes, tier = self.args
            self._prof, self._event = prof, prof.region(name, "op")
            self._event.flops, self._event.bytes, self._event.tier = flops, nbytes, tier

    def __exit__(self, *exc: object) -> None:
        if self._event is not None and self._prof is not None:
            self._prof._end(self._event)


def is_profiling() -> bool:
    """True while a profile block is open."""
    return autograd._PROFILER is not None
