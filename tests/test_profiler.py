"""mt.profiler: what it records (ops forward and backward, regions, optimizer), the counts it derives (FLOPs from
shapes, self and total time), torch's table and the Chrome trace, that it changes no result, and that it is off
outside its block. `minitransformer train --profile N` writes the table and trace.json."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import minitransformer as mt
from minitransformer import autograd
from minitransformer.nn.gpt import GPT, GPTConfig


def _tiny_gpt(seed: int = 0) -> GPT:
    mt.manual_seed(seed)
    return GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0))


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 11, (3, 16)), rng.integers(0, 11, (3, 16))


def test_matmul_forward_and_backward_events_with_flops_and_shapes():
    M, K, N = 5, 7, 3
    a = mt.randn(M, K, requires_grad=True)
    b = mt.randn(K, N, requires_grad=True)
    with mt.profiler.profile(record_shapes=True) as prof:
        (a @ b).sum().backward()
    names = [e.name for e in prof.events]
    assert "MatMul" in names and "MatMulBackward" in names and "Sum" in names and "SumBackward" in names
    fwd = next(e for e in prof.events if e.name == "MatMul")
    assert fwd.input_shapes == ((M, K), (K, N))
    assert fwd.flops == 2 * M * N * K                      # one multiply and one add per term of each dot product
    assert fwd.bytes == 4 * (M * K + K * N + M * N)         # float32 inputs read, output written once
    bwd = next(e for e in prof.events if e.name == "MatMulBackward")
    assert bwd.flops == 2 * (2 * M * N * K)                 # da = g b^T and db = a^T g: two products as large
    assert bwd.input_shapes == fwd.input_shapes


def test_backward_flops_count_only_the_gradients_taken():
    x = mt.randn(5, 7)                                      # no gradient: only dweight = g^T x is computed
    w = mt.randn(3, 7, requires_grad=True)
    a = mt.randn(2, 3, 4, requires_grad=True)
    b = mt.randn(2, 4, 5)
    with mt.profiler.profile() as prof:
        mt.nn.functional.linear(x, w).sum().backward()
        mt.einsum("bij,bjk->bik", a, b).sum().backward()
    flops = {e.name: e.flops for e in prof.events}
    assert flops["Linear"] == flops["LinearBackward"] == 2 * 5 * 3 * 7
    assert flops["Einsum"] == flops["EinsumBackward"] == 2 * 2 * 3 * 4 * 5   # b, i, j, k: one multiply-add each


def test_attention_flops_counted_from_the_shapes():
    B, H, L, S, E = 2, 3, 4, 6, 5
    q, k, v = (mt.randn(B, H, n, E) for n in (L, S, S))
    with mt.profiler.profile() as prof:
        mt.nn.functional.scaled_dot_product_attention(q, k, v)
    ev = next(e for e in prof.events if e.name == "Attention")
    # q k^T: B*H*L*S dot products of length E; P v: B*H*L*E dot products of length S; 2 FLOPs per term
    assert ev.flops == 2 * B * H * L * S * E + 2 * B * H * L * E * S


def test_self_time_excludes_nested_events_and_regions_nest():
    x = mt.randn(64, 64, requires_grad=True)
    with mt.profiler.profile() as prof:
        with mt.profiler.record_function("outer"):
            with mt.profiler.record_function("inner"):
                y = (x @ x).relu()
            y.sum().backward()
    ev = {e.name: e for e in prof.events}
    outer, inner = ev["outer"], ev["inner"]
    assert outer.start_us <= inner.start_us and inner.end_us <= outer.end_us
    inside_inner = [e for e in prof.events
                    if e.kind == "op" and inner.start_us <= e.start_us and e.end_us <= inner.end_us]
    assert {e.name for e in inside_inner} == {"MatMul", "ReLU"}
    # child time: the ops inside, plus the profiler's own bookkeeping after each (charged to no one)
    assert inner.child_us >= sum(e.cpu_time_total for e in inside_inner)
    assert inner.child_us <= inner.cpu_time_total
    assert inner.self_cpu_time_total == pytest.approx(inner.cpu_time_total - inner.child_us)
    direct = [e for e in prof.events if e is not outer and e.kind != "step" and outer.start_us <= e.start_us
              and e.end_us <= outer.end_us and not (inner.start_us <= e.start_us and e.end_us <= inner.end_us)]
    assert outer.child_us >= sum(e.cpu_time_total for e in direct) + inner.cpu_time_total
    assert all(e.self_cpu_time_total >= 0 for e in prof.events)


def test_key_averages_groups_by_name_and_by_shape():
    x, y = mt.randn(3, 4), mt.randn(5, 4)
    with mt.profiler.profile(record_shapes=True) as prof:
        for _ in range(3):
            x.exp()
        y.exp()
    by_name = {e.key: e for e in prof.key_averages()}
    assert by_name["Exp"].count == 4
    assert by_name["Exp"].flops == 3 * 12 + 20
    by_shape = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "Exp"]
    assert sorted(e.count for e in by_shape) == [1, 3]
    assert {e.input_shapes for e in by_shape} == {"[[3, 4]]", "[[5, 4]]"}
    total = sum(e.cpu_time_total for e in prof.events if e.name == "Exp")
    assert by_name["Exp"].cpu_time_total == pytest.approx(total)
    assert by_name["Exp"].cpu_time == pytest.approx(total / 4)


def test_table_has_torch_columns_and_the_roofline_columns():
    model = _tiny_gpt()
    x, y = _batch()
    with mt.profiler.profile(record_shapes=True) as prof:
        _, loss = model(x, y)
        loss.backward()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=5)
    header = table.splitlines()[1]
    for col in ("Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "# of Calls",
                "% step", "FLOPs", "GFLOP/s", "GB/s", "% roof", "Tier"):
        assert col in header
    rows = table.splitlines()[3:8]
    assert len(rows) == 5
    by_key = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    shown = [by_key[r.split()[0]] for r in rows]                 # the rows' own order, looked up independently
    assert shown == sorted(by_key.values(), reverse=True)[:5]
    assert "Self CPU time total" in table and "Machine peak" in table
    with pytest.raises(ValueError, match="sort_by='nope' is not a column"):
        prof.key_averages().table(sort_by="nope")


def test_roof_fraction_is_achieved_over_attainable():
    avg = mt.profiler.FunctionEventAvg("op", count=1, self_cpu_time_total=1000.0, flops=2e6, bytes=1e6)  # 1 ms
    peak = {"gflops": 10.0, "gbps": 4.0, "threads": 1}
    # 2 GFLOP/s achieved; intensity 2 FLOP/B x 4 GB/s = 8 GFLOP/s attainable (below the 10 peak)
    assert avg.gflops == pytest.approx(2.0) and avg.roof_fraction(peak) == pytest.approx(2.0 / 8.0)
    memory_only = mt.profiler.FunctionEventAvg("copy", count=1, self_cpu_time_total=1000.0, bytes=2e6)
    assert memory_only.roof_fraction(peak) == pytest.approx(2.0 / 4.0)


def test_tier_follows_the_backend_setting():
    x = mt.randn(4, 8)
    with mt.backend.use("numpy"), mt.profiler.profile() as prof:
        x.softmax(-1)
    assert next(e for e in prof.events if e.name == "Softmax").tier == "numpy"
    with mt.profiler.profile() as prof:
        x.softmax(-1)
    assert next(e for e in prof.events if e.name == "Softmax").tier == mt.backend.tier_of("softmax_forward")


def test_profiling_changes_no_result():
    x, y = _batch()
    grads = []
    for on in (False, True):
        model = _tiny_gpt()
        opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99))
        with mt.profiler.profile(enabled=on):
            _, loss = model(x, y)
            loss.backward()
            opt.step()
        grads.append([p.detach().numpy().copy() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_array_equal(a, b)


def test_optimizer_step_is_recorded_with_its_cost():
    model = _tiny_gpt()
    opt = mt.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = _batch()
    _, loss = model(x, y)
    loss.backward()
    with mt.profiler.profile() as prof:
        opt.step()
    ev = [e for e in prof.events if e.name == "Optimizer.step#AdamW.step"]
    n = sum(p.numel() for p in model.parameters())
    assert ev and sum(e.bytes for e in ev) == 7 * 4 * n      # param, grad, 2 moments read; param, 2 moments written


def test_off_outside_the_block_and_no_nesting():
    x = mt.randn(3, requires_grad=True)
    with mt.profiler.profile() as prof:
        assert mt.profiler.is_profiling()
        with pytest.raises(RuntimeError, match="do not nest"), mt.profiler.profile():
            pass
        x.exp()
    assert autograd._PROFILER is None and not mt.profiler.is_profiling()
    n = len(prof.events)
    x.exp().sum().backward()
    with mt.profiler.record_function("nothing"):
        pass
    assert len(prof.events) == n


def test_an_exception_inside_closes_the_profile():
    with pytest.raises(ValueError), mt.profiler.profile():
        mt.ones(2, 3) @ mt.ones(2, 3)
    assert autograd._PROFILER is None


def test_record_function_as_decorator():
    @mt.profiler.record_function("mine")
    def f(t):
        return t * 2

    with mt.profiler.profile() as prof:
        f(mt.ones(3))
    mine = next(e for e in prof.events if e.name == "mine")
    assert mine.child_us > 0 and any(e.name == "Mul" for e in prof.events)


def test_steps_are_marked_and_the_wall_time_covers_them():
    x = mt.randn(8, 8)
    with mt.profiler.profile() as prof:
        for _ in range(3):
            x.exp()
            prof.step()
    steps = [e for e in prof.events if e.kind == "step"]
    assert [e.name for e in steps] == ["ProfilerStep#0", "ProfilerStep#1", "ProfilerStep#2"]
    assert prof.key_averages().wall_us == pytest.approx(steps[-1].end_us)
    assert "ProfilerStep#0" not in {e.key for e in prof.key_averages()}


def test_chrome_trace_is_trace_event_json(tmp_path):
    model = _tiny_gpt()
    x, y = _batch()
    with mt.profiler.profile(record_shapes=True) as prof:
        with mt.profiler.record_function("forward"):
            _, loss = model(x, y)
        loss.backward()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(path)
    doc = json.loads(path.read_text())
    events = doc["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert len(spans) == len(prof.events)
    for e in spans:
        assert isinstance(e["ts"], (int, float)) and e["dur"] >= 0 and isinstance(e["pid"], int)
        assert isinstance(e["tid"], int) and e["name"] and e["cat"] in ("cpu_op", "user_annotation",
                                                                          "cpu_instant_event")
    fwd = next(e for e in spans if e["name"] == "forward")
    linear = next(e for e in spans if e["name"] == "Linear")
    assert fwd["ts"] <= linear["ts"] and linear["ts"] + linear["dur"] <= fwd["ts"] + fwd["dur"] + 1e-3
    assert linear["args"]["Input Shapes"][0][-1] == 16 and linear["args"]["FLOPs"] > 0
    assert any(e["ph"] == "M" and e["name"] == "thread_name" for e in events)


def test_porting_maps_torch_profiler():
    from minitransformer.porting import rewrite_imports

    src = "import torch\nfrom torch.profiler import profile, record_function, ProfilerActivity\n"
    ns: dict[str, object] = {}
    exec(compile(rewrite_imports(src), "<ported>", "exec"), ns)
    assert ns["profile"] is mt.profiler.profile and ns["ProfilerActivity"].CPU


def test_train_profile_prints_the_table_and_writes_the_trace(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "minitransformer", "train", "--out", str(out), "--max-iters", "6",
                           "--profile", "2", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size",
                           "16", "--batch-size", "2", "--eval-interval", "100", "--eval-iters", "1", "--quiet",
                           "--sample-tokens", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "profile of 2 step(s) from step 3" in proc.stdout
    for name in ("forward", "backward", "optimizer", "LinearBackward", "Optimizer.step#AdamW.step"):
        assert name in proc.stdout
    doc = json.loads((out / "trace.json").read_text())
    steps = [e for e in doc["traceEvents"] if e["name"].startswith("ProfilerStep#")]
    assert len(steps) == 2


def test_the_docs_example_runs_and_prints_what_the_docs_show(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "training.md").read_text()
    section = text[text.index("## Where a training step's time goes"):]
    code, shown = re.search(r"```python\n(.*?)```\n\n```text\n(.*?)```", section, re.S).groups()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/training.md", "exec"), {})
    assert capsys.readouterr().out == shown
    assert json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
