"""mt.save / mt.load: round trips of nested structures (Hypothesis), a GPT + AdamW resume that is bit-identical
to an uninterrupted run, sharing, atomic writes, clear errors for unsupported objects and damaged files,
map_location, hostile pickles in torch-format archives (refused without running anything), and files written
by real PyTorch where it is installed."""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import subprocess
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitransformer as mt
from minitransformer import serialization
from minitransformer.dtypes import bfloat16_dtype, is_floating
from minitransformer.serialization import SerializationError, load, save

BF16 = bfloat16_dtype()  # NumPy's bfloat16 where ml_dtypes is installed
DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64", "complex64", "complex128"]


def roundtrip(obj, **kw):
    buf = io.BytesIO()
    save(obj, buf)
    buf.seek(0)
    return load(buf, **kw)


def assert_same(a, b, path="obj"):
    """Equal values and the same types all the way down; arrays bit for bit (NaNs included)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, mt.Tensor):
        assert a.requires_grad == b.requires_grad, path
        assert_same(a.data, b.data, path + ".data")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), path
        assert a.tobytes() == b.tobytes(), path
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), path
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for (ka, x), kb in zip(a.items(), b, strict=True):
            assert type(ka) is type(kb), f"{path}: key {ka!r}"
            assert_same(x, b[kb], f"{path}[{ka!r}]")
    else:
        assert a == b, path


# ------------------------------------------------------------------------------------------------------
# round trips
@st.composite
def array_leaves(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES + ([BF16] if BF16 is not None else []))))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    arr = draw(hnp.arrays(np.uint16, shape)).view(BF16) if dtype == BF16 else draw(hnp.arrays(dtype, shape))
    if arr.ndim >= 2 and draw(st.booleans()):
        arr = arr.T  # a non-contiguous view: saved contiguously
    kinds = ["ndarray", "tensor"] + (["scalar"] if arr.ndim == 0 else [])
    kinds += ["parameter"] if is_floating(dtype) else []
    kind = draw(st.sampled_from(kinds))
    if kind == "ndarray":
        return arr
    if kind == "scalar":
        return arr[()]
    grad = is_floating(dtype) and draw(st.booleans())
    return mt.nn.Parameter(arr, requires_grad=grad) if kind == "parameter" else mt.Tensor(arr, requires_grad=grad)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=6),
                    st.binary(max_size=6))
keys = st.one_of(st.text(max_size=4), st.integers(-3, 2**40), st.tuples(st.integers(0, 3), st.text(max_size=2)))
nested = st.recursive(
    st.one_of(scalars, array_leaves()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(keys, inner, max_size=3), st.dictionaries(keys, inner, max_size=3).map(OrderedDict),
        st.sets(st.integers(-5, 5) | st.text(max_size=2), max_size=3), st.frozensets(st.integers(), max_size=2)),
    max_leaves=8)


@given(nested)
def test_roundtrip_of_nested_structures(obj):
    assert_same(obj, roundtrip(obj))


def test_roundtrip_through_paths_and_file_objects(tmp_path):
    obj = {"w": mt.randn(3, 2), 1: (2.5, None, "x"), "e": mt.zeros(0, 4), "s": mt.tensor(3.0)}
    for path in (str(tmp_path / "a.pt"), tmp_path / "b.pt"):
        save(obj, path)
        assert_same(obj, load(path))
    with open(tmp_path / "c.pt", "wb") as f:
        save(obj, f)
    with open(tmp_path / "c.pt", "rb") as f:
        assert_same(obj, load(f))

    class Stream:  # readable, not seekable (a pipe)
        def __init__(self, data):
            self.inner = io.BytesIO(data)

        def read(self, n=-1):
            return self.inner.read(n)

        def seekable(self):
            return False

    assert_same(obj, load(Stream((tmp_path / "c.pt").read_bytes())))
    with open(tmp_path / "d.pt", "wb") as f:  # a file that starts with something else
        f.write(b"header")
        save(obj, f)
    with open(tmp_path / "d.pt", "rb") as f:
        f.seek(6)
        assert_same(obj, load(f))


def test_saving_is_deterministic_and_loads_contiguous_arrays():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    obj = {"t": mt.Tensor(base[:, ::2]), "a": base.T}
    first, second = io.BytesIO(), io.BytesIO()
    save(obj, first)
    save(obj, second)
    assert first.getvalue() == second.getvalue()
    out = roundtrip(obj)
    assert out["t"].data.flags.c_contiguous and out["a"].flags.c_contiguous
    np.testing.assert_array_equal(out["t"].data, base[:, ::2])
    np.testing.assert_array_equal(out["a"], base.T)


def test_same_objects_stay_shared():
    t = mt.randn(2, 3)
    sd = OrderedDict(a=t, b=t, c=t.detach(), d=mt.randn(2, 3))
    out = roundtrip(sd)
    assert out["a"] is out["b"]  # one Tensor object saved twice: one object back
    assert out["c"] is not out["a"] and out["c"].data is out["a"].data  # two Tensors over one array: one array
    out["a"].data[0, 0] = 42.0
    assert out["c"].data[0, 0] == 42.0
    assert out["d"].data is not out["a"].data


def tiny_gpt(seed):
    mt.manual_seed(seed)
    return mt.nn.GPT(mt.nn.GPTConfig(block_size=8, vocab_size=32, n_layer=2, n_head=2, n_embd=16))


def train_step(model, opt, step):
    rng = np.random.default_rng(step)
    x = rng.integers(0, 32, size=(2, 8))
    y = rng.integers(0, 32, size=(2, 8))
    _, loss = model(x, y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_gpt_and_adamw_resume_bit_identical(tmp_path):
    model = tiny_gpt(0)
    opt = mt.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    for step in range(3):
        train_step(model, opt, step)
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "iter_num": 3,
            "best_val_loss": mt.tensor(1.25), "model_args": dict(n_layer=2, n_head=2, n_embd=16, block_size=8,
                                                                 bias=True, vocab_size=32, dropout=0.0),
            "config": {"learning_rate": 1e-2, "compile": False, "out_dir": "out", "eval_iters": 2}}
    save(ckpt, tmp_path / "ckpt.pt")
    train_step(model, opt, 3)
    expected = {k: v.data.copy() for k, v in model.state_dict().items()}

    loaded = load(tmp_path / "ckpt.pt", map_location="cpu")
    sd = loaded["model"]
    assert sd["lm_head.weight"].data is sd["transformer.wte.weight"].data  # tied weights stay tied
    assert loaded["iter_num"] == 3 and type(loaded["iter_num"]) is int
    assert loaded["best_val_loss"].shape == () and loaded["best_val_loss"].item() == 1.25
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    resumed = tiny_gpt(1)
    resumed.load_state_dict(sd)
    opt2 = mt.optim.AdamW(resumed.parameters(), lr=0.5)
    opt2.load_state_dict(loaded["optimizer"])
    train_step(resumed, opt2, 3)
    got = resumed.state_dict()
    for k, v in expected.items():
        assert got[k].data.tobytes() == v.tobytes(), k


# ------------------------------------------------------------------------------------------------------
# writing: atomic, and refusing what it cannot save
@pytest.mark.parametrize("where", ["encoding", "fsync"])
def test_failed_save_leaves_destination_untouched(tmp_path, monkeypatch, where):
    dest = tmp_path / "ckpt.pt"
    save({"old": mt.ones(2)}, dest)
    before = dest.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if where == "encoding":
        calls = []
        real = serialization._record_bytes

        def fail_second(arr):
            calls.append(1)
            if len(calls) == 2:
                boom()
            return real(arr)

        monkeypatch.setattr(serialization, "_record_bytes", fail_second)
    else:
        monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save({"a": mt.zeros(3), "b": mt.zeros(4), "c": mt.zeros(5)}, dest)
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary file left behind


def test_unsupported_objects_name_their_place(tmp_path):
    dest = tmp_path / "x.pt"
    with pytest.raises(TypeError, match=r"obj\['config'\]\['fn'\]: an object of type builtins.function"):
        save({"config": {"lr": 1.0, "fn": lambda x: x}}, dest)
    with pytest.raises(TypeError, match=r"obj\['model'\].*state_dict\(\)"):
        save({"model": mt.nn.Linear(2, 2)}, dest)

    class Thing:
        pass

    with pytest.raises(TypeError, match=r"obj\[1\]\[0\]: an object of type .*Thing"):
        save([0, (Thing(),)], dest)
    with pytest.raises(TypeError, match=r"obj\['a'\]: dtype object"):
        save({"a": np.array([None])}, dest)
    loop = [1]
    loop.append(loop)
    with pytest.raises(TypeError, match=r"obj\[1\] contains itself"):
        save(loop, dest)
    assert not dest.exists()


# ------------------------------------------------------------------------------------------------------
# reading damaged or foreign files
def saved_bytes(obj=None):
    buf = io.BytesIO()
    save({"w": mt.arange(6).float(), "n": 3} if obj is None else obj, buf)
    return buf.getvalue()


def rezip(data, edit):
    """The archive `data` with its entries passed through edit(name, bytes) -> bytes (None drops it)."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = edit(info.filename, src.read(info))
            if body is not None:
                dst.writestr(info.filename, body)
    return out.getvalue()


def test_every_truncation_is_one_clear_error():
    data = saved_bytes()
    for cut in range(0, len(data), 3):
        with pytest.raises(SerializationError, match="<BytesIO>"):
            load(io.BytesIO(data[:cut]))


@given(st.data())
def test_flipped_bytes_give_a_result_or_a_clear_error(data):
    blob = bytearray(saved_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        load(io.BytesIO(bytes(blob)))
    except SerializationError:
        pass


def test_corrupt_record_fails_its_checksum():
    data = bytearray(saved_bytes())
    at = data.index(np.arange(6, dtype=np.float32).tobytes())
    data[at] ^= 0xFF
    with pytest.raises(SerializationError, match="data/0 is corrupt"):
        load(io.BytesIO(bytes(data)))


def test_declared_shape_must_match_the_record_before_allocating():
    def shape(new):
        return lambda n, b: b.replace(b'"shape":[6]', new) if n == serialization.DOC else b

    with pytest.raises(SerializationError, match=r"data/0 should hold float32 \[7\] \(28 bytes\) but holds 24"):
        load(io.BytesIO(rezip(saved_bytes(), shape(b'"shape":[7]'))))
    with pytest.raises(SerializationError, match=r"data/0 should hold float32 \[1000000000000000\]"):
        load(io.BytesIO(rezip(saved_bytes(), shape(b'"shape":[1000000000000000]'))))
    with pytest.raises(SerializationError, match=r"data/0 has an invalid shape \[-6\]"):
        load(io.BytesIO(rezip(saved_bytes(), shape(b'"shape":[-6]'))))
    with pytest.raises(SerializationError, match="record data/0 is missing"):
        load(io.BytesIO(rezip(saved_bytes(), lambda n, b: None if n == "data/0" else b)))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.replace(b'"version":1', b'"version":9'), "version 9; this library reads version 1"),
    (lambda d: d.replace(b'"dtype":"float32"', b'"dtype":"object"'), "unsupported dtype 'object'"),
    (lambda d: d.replace(b'"$tensor":0', b'"$tensor":5'), "malformed root"),
    (lambda d: d.replace(b'"requires_grad":false', b'"requires_grad":"yes"'), "malformed tensor 0"),
    (lambda d: d[:-3], "corrupt minitransformer.json"),
])
def test_malformed_documents(edit, message):
    data = rezip(saved_bytes(), lambda n, b: edit(b) if n == serialization.DOC else b)
    with pytest.raises(SerializationError, match=message):
        load(io.BytesIO(data))


def test_foreign_files_get_one_line(tmp_path):
    cases = {
        b"": "not a file written by mt.save or torch.save (the file is empty)",
        b"hello world": "not a file written by mt.save or torch.save",
        pickle.dumps({"a": 1}): "a plain pickle",
        b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".": "legacy format",
    }
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hi")
    cases[other.getvalue()] = "a zip archive, but not one written by mt.save or torch.save"
    script = io.BytesIO()
    with zipfile.ZipFile(script, "w") as z:
        z.writestr("model/data.pkl", b"")
        z.writestr("model/constants.pkl", b"")
    cases[script.getvalue()] = "TorchScript"
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in ((n, zipfile.ZipFile(io.BytesIO(saved_bytes())).read(n)) for n in (serialization.DOC, "data/0")):
            z.writestr(n, b)
    cases[deflated.getvalue()] = "data/0 is compressed"
    for i, (blob, message) in enumerate(cases.items()):
        path = tmp_path / f"f{i}.pt"
        path.write_bytes(blob)
        with pytest.raises(SerializationError, match=re.escape(message)) as info:
            load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------------
# map_location
class DeviceLike:
    def __str__(self):
        return "cpu"


@pytest.mark.parametrize("where", [None, "cpu", DeviceLike(), {"cuda:0": "cpu"}, {"cpu": "cpu"},
                                   lambda storage, loc: storage, lambda storage, loc: None])
def test_map_location_to_cpu(where):
    t = mt.randn(3)
    out = roundtrip({"a": t, "b": t.detach()}, map_location=where, weights_only=False, mmap=False)
    assert out["a"].device == "cpu" and out["a"].data is out["b"].data
    np.testing.assert_array_equal(out["a"].data, t.data)


def test_map_location_callable_sees_each_storage_and_location():
    seen = []
    roundtrip({"a": mt.ones(2, 3), "b": np.zeros(4, np.int8)}, map_location=lambda s, loc: seen.append((s, loc)))
    assert [(s.shape, s.dtype, loc) for s, loc in seen] == [((6,), np.float32, "cpu"), ((4,), np.int8, "cpu")]
    assert all(isinstance(s, mt.Tensor) for s, _ in seen)


def test_unknown_or_unavailable_devices_are_errors():
    with pytest.raises(ValueError, match="unknown device 'mps'"):
        roundtrip({"a": mt.ones(1)}, map_location="mps")
    try:
        mt.xp.cupy_module()
    except RuntimeError:
        with pytest.raises(RuntimeError, match="'cuda' is unavailable"):
            roundtrip({"a": mt.ones(1)}, map_location="cuda:0")


@pytest.mark.gpu
def test_cuda_tensors_save_to_host_and_load_to_either_device():
    t = mt.randn(4, 3).cuda()
    ckpt = {"a": t, "b": t.detach(), "n": mt.xp.cupy_module().arange(3)}
    out = roundtrip(ckpt)
    assert out["a"].device == "cpu" and isinstance(out["n"], np.ndarray)
    np.testing.assert_array_equal(out["a"].data, t.data.get())
    gpu = roundtrip(ckpt, map_location="cuda")
    assert gpu["a"].device == "cuda" and gpu["a"].data is gpu["b"].data
    np.testing.assert_array_equal(gpu["a"].data.get(), t.data.get())


# ------------------------------------------------------------------------------------------------------
# torch-format archives built by hand: hostile pickles are refused before anything runs
def torch_zip(pkl, records=(), prefix="archive"):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", "little")
        for key, body in records:
            z.writestr(f"{prefix}/data/{key}", body)
        z.writestr(f"{prefix}/version", "3\n")
    return out.getvalue()


class Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile_pickles(side: Path):
    """refused global -> a pickle that would create `side` if anything in it ran."""
    code = f"open({str(side)!r}, 'w').write('ran')"
    return {
        f"{os.system.__module__}.system": pickle.dumps(Payload(os.system, f"touch {side}"), protocol=2),
        "builtins.eval": pickle.dumps(OrderedDict(w=Payload(eval, code)), protocol=2),
        "builtins.exec": pickle.dumps({"state": [Payload(exec, code)]}, protocol=4),  # STACK_GLOBAL
        "subprocess.Popen": pickle.dumps(Payload(subprocess.Popen, ["touch", str(side)]), protocol=2),
        "builtins.getattr": b"\x80\x02cbuiltins\ngetattr\ncos\nsystem\n\x85R.",
        "os.system": b"(S'touch " + str(side).encode() + b"'\nios\nsystem\n.",  # protocol 0's INST opcode
    }


def test_the_hostile_pickles_are_live(tmp_path):
    side = tmp_path / "side_effect"
    pickle.loads(hostile_pickles(side)["builtins.eval"])  # what a plain unpickler does with them
    assert side.read_text() == "ran"


@pytest.mark.parametrize("weights_only", [True, False])
def test_hostile_pickles_are_refused_without_running(tmp_path, weights_only):
    side = tmp_path / "side_effect"
    for refused, pkl in hostile_pickles(side).items():
        path = tmp_path / "ckpt.pt"
        path.write_bytes(torch_zip(pkl))
        with pytest.raises(SerializationError) as info:
            load(path, weights_only=weights_only)
        message = str(info.value)
        assert f"mt.load refused to load '{refused}' from {path}: only tensors, containers and numbers" in message
        assert ("weights_only=False does not lift this" in message) == (not weights_only)
        assert not side.exists()


class FloatStorage:
    """Stands for torch.FloatStorage in hand-built pickles (see `torch_pickle`)."""


def _rebuild_tensor_v2(*args):
    """Stands for torch._utils._rebuild_tensor_v2 in hand-built pickles."""


class Rebuild:
    def __init__(self, pid, offset, size, stride):
        self.args = (pid, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return _rebuild_tensor_v2, self.args


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj if type(obj) is tuple and obj and obj[0] == "storage" else None


def torch_pickle(obj):
    """data.pkl as torch.save writes it: Rebuild(...) for each tensor, ('storage', FloatStorage, key,
    location, numel) for each storage, and the stand-ins renamed to torch's globals."""
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    data = buf.getvalue()
    for module, name in (("torch", "FloatStorage"), ("torch._utils", "_rebuild_tensor_v2")):
        data = data.replace(f"c{__name__}\n{name}\n".encode(), f"c{module}\n{name}\n".encode())
    assert b"torch._utils" in data
    return data


def storage_id(key="0", numel=12, location="cpu"):
    return ("storage", FloatStorage, key, location, numel)


def test_hand_built_torch_archive_with_sharing_offsets_and_strides():
    storage = np.arange(12, dtype=np.float32)
    pid = storage_id()
    tensors = OrderedDict(
        w=Rebuild(pid, 0, (3, 4), (4, 1)), tied=Rebuild(pid, 0, (3, 4), (4, 1)), t=Rebuild(pid, 0, (4, 3), (1, 4)),
        row=Rebuild(pid, 4, (4,), (1,)), odd=Rebuild(pid, 1, (2, 3), (6, 2)), bcast=Rebuild(pid, 2, (2, 3), (0, 1)),
        empty=Rebuild(pid, 99, (0, 5), (5, 1)), scalar=Rebuild(pid, 11, (), ()))
    out = load(io.BytesIO(torch_zip(torch_pickle(tensors), [("0", storage.tobytes())])))
    assert type(out) is OrderedDict and list(out) == list(tensors)
    m = storage.reshape(3, 4)
    expect = dict(w=m, tied=m, t=m.T, row=storage[4:8], odd=[[1, 3, 5], [7, 9, 11]], bcast=[[2, 3, 4], [2, 3, 4]],
                  empty=np.zeros((0, 5)), scalar=np.float32(11))
    for k, v in expect.items():
        assert out[k].shape == np.shape(v), k
        np.testing.assert_array_equal(out[k].data, v, err_msg=k)
        assert out[k].data.flags.c_contiguous and out[k].dtype == np.float32
    assert out["w"] is not out["tied"] and out["w"].data is out["tied"].data
    assert np.shares_memory(out["w"].data, out["row"].data)  # contiguous views share their storage, as in torch
    out["w"].data[1, 0] = -1.0
    assert out["row"].data[0] == -1.0


@pytest.mark.parametrize("tensor, storage_bytes, message", [
    ((0, (4,), (1,)), 12, r"archive/data/0 should hold float32 \[4\] \(16 bytes\) but holds 12"),
    ((2, (3,), (1,)), 16, "does not fit in storage 0 of 4 elements"),
    ((0, (2, 2), (1,)), 16, "invalid offset, size or stride"),
    ((0, (2,), (-1,)), 16, "invalid offset, size or stride"),
])
def test_torch_archives_with_bad_sizes(tensor, storage_bytes, message):
    pkl = torch_pickle({"x": Rebuild(storage_id(numel=4), *tensor)})
    with pytest.raises(SerializationError, match=message):
        load(io.BytesIO(torch_zip(pkl, [("0", bytes(storage_bytes))])))


def test_torch_archive_with_a_corrupt_pickle():
    with pytest.raises(SerializationError, match="corrupt archive/data.pkl"):
        load(io.BytesIO(torch_zip(b"\x80\x02}q\x00(X\x01\x00")))
    with pytest.raises(SerializationError, match="unexpected persistent id"):
        load(io.BytesIO(torch_zip(b"\x80\x02X\x03\x00\x00\x00abcQ.")))


# ------------------------------------------------------------------------------------------------------
# files written by PyTorch itself (each test imports torch, and is skipped without it)
def assert_matches_torch(ours, theirs, path="obj"):
    torch = pytest.importorskip("torch")
    if isinstance(theirs, torch.Tensor):
        expected_type = mt.nn.Parameter if isinstance(theirs, torch.nn.Parameter) else mt.Tensor
        assert type(ours) is expected_type, path
        want = theirs.detach()
        if want.dtype == torch.bfloat16:  # compared through float32 (exact); the dtype is checked here
            assert ours.dtype == (BF16 if BF16 is not None else np.float32), path
            want, ours = want.float().numpy(), mt.Tensor(ours.data.astype(np.float32), ours.requires_grad)
        want = np.asarray(want)
        assert (ours.dtype, ours.shape, ours.requires_grad) == (want.dtype, want.shape, theirs.requires_grad), path
        np.testing.assert_array_equal(ours.data, want, err_msg=path)
    elif isinstance(theirs, torch.Size):
        assert type(ours) is tuple and ours == tuple(theirs), path
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs), path
        for k in theirs:
            assert_matches_torch(ours[k], theirs[k], f"{path}[{k!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), path
        for i, (x, y) in enumerate(zip(ours, theirs, strict=True)):
            assert_matches_torch(x, y, f"{path}[{i}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, path


def test_torch_tensors_of_every_dtype_and_layout(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    base = torch.randn(4, 6)
    sd = OrderedDict(
        f32=base, f64=torch.randn(3, dtype=torch.float64), f16=torch.randn(2, 2).half(),
        bf16=torch.tensor([1.5, -2.25, 3e38], dtype=torch.bfloat16), i64=torch.arange(5), i32=torch.arange(3).int(),
        i16=torch.arange(3).short(), i8=torch.tensor([-128, 127], dtype=torch.int8),
        u8=torch.tensor([0, 255], dtype=torch.uint8), u16=torch.tensor([65535], dtype=torch.uint16),
        b=torch.tensor([True, False]), c64=torch.tensor([1 + 2j], dtype=torch.complex64),
        zero_d=torch.tensor(2.5), empty=torch.empty(0, 3), transposed=base.t(), strided=base[:, ::2],
        offset=base[2:], column=base[:, 3], expanded=torch.arange(3.0).expand(2, 3), same_storage=base.view(24),
        param=torch.nn.Parameter(torch.ones(2)), frozen=torch.nn.Parameter(torch.ones(2), requires_grad=False),
        grad=torch.zeros(2, requires_grad=True), size=torch.Size([2, 3]), nested={1: [(2.5, "x", None, b"raw")]})
    path = tmp_path / "ckpt.pt"
    torch.save(sd, path)
    out = load(path)
    assert_matches_torch(out, sd)
    assert np.shares_memory(out["f32"].data, out["offset"].data)  # one storage, as in torch
    assert np.shares_memory(out["f32"].data, out["same_storage"].data)
    assert not np.shares_memory(out["f32"].data, out["transposed"].data)  # copied: it is not contiguous


def test_torch_bfloat16_without_ml_dtypes_loads_as_float32(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(mt.dtypes, "_bf16", [None])  # as if ml_dtypes were not installed
    sd = {"w": torch.tensor([1.5, -2.25, 3e38, float("inf")], dtype=torch.bfloat16, requires_grad=True)}
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    with pytest.warns(UserWarning, match="bfloat16 tensors are loaded as float32"):
        out = load(buf)
    assert out["w"].dtype == np.float32 and out["w"].requires_grad
    assert out["w"].data.tolist() == sd["w"].float().tolist()


def test_torch_model_and_optimizer_checkpoint():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 4, bias=False))
    model[2].weight = torch.nn.Parameter(model[0].weight.t().contiguous())
    params = list(model.parameters())
    # torch.optim.AdamW(...).state_dict() after one step, written out (creating a torch optimizer costs seconds)
    state = {i: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
             for i, p in enumerate(params)}
    groups = [{"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False, "foreach": None,
               "maximize": False, "capturable": False, "differentiable": False, "fused": None,
               "params": list(range(len(params)))}]
    ckpt = {"model": model.state_dict(), "optimizer": {"state": state, "param_groups": groups}, "iter_num": 7,
            "best_val_loss": torch.tensor(1.75), "config": {"lr": 1e-2, "compile": False, "name": "x"}}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    out = load(buf, map_location="cpu")
    assert_matches_torch(out, ckpt)
    assert type(out["model"]) is OrderedDict and out["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert out["best_val_loss"].shape == () and out["optimizer"]["state"][0]["step"].shape == ()


def test_torch_saved_gpt_checkpoint_loads_into_our_gpt(tmp_path):
    torch = pytest.importorskip("torch")
    model = tiny_gpt(0)
    tensors = {}  # one torch tensor per array, so the tied weights share a storage as in a torch state dict
    sd = OrderedDict((k, tensors.setdefault(id(v.data), torch.from_numpy(v.data)))
                     for k, v in model.state_dict().items())
    ckpt = {"model": sd, "model_args": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, "vocab_size": 32},
            "iter_num": 10, "best_val_loss": torch.tensor(3.5)}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    out = load(tmp_path / "ckpt.pt", map_location="cpu")
    assert out["model"]["lm_head.weight"].data is out["model"]["transformer.wte.weight"].data
    other = tiny_gpt(1)
    other.load_state_dict(out["model"])
    x = np.arange(16).reshape(2, 8) % 32
    with mt.no_grad():
        np.testing.assert_array_equal(other(x, x)[0].data, model(x, x)[0].data)


def test_torch_cuda_locations_and_map_location():
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.arange(3.0)}, buf)
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # the location string in data.pkl
    data = rezip(buf.getvalue(), lambda n, b: b.replace(cpu, cuda) if n.endswith("data.pkl") else b)
    seen = []
    for where in (None, "cpu", {"cuda:0": "cpu"}, lambda s, loc: seen.append(loc)):
        out = load(io.BytesIO(data), map_location=where)
        assert out["w"].device == "cpu"
        np.testing.assert_array_equal(out["w"].data, [0, 1, 2])
    assert seen == ["cuda:0"]


def test_torch_big_endian_archive():
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"f": torch.tensor([1.5, -2.0]), "i": torch.tensor([1, 2**40])}, buf)
    swapped = {"0": np.float32, "1": np.int64}

    def to_big(name, body):
        if name.endswith("byteorder"):
            return b"big"
        key = name.rsplit("/", 1)[-1]
        return np.frombuffer(body, swapped[key]).byteswap().tobytes() if "/data/" in name else body

    out = load(io.BytesIO(rezip(buf.getvalue(), to_big)))
    assert out["f"].data.tolist() == [1.5, -2.0] and out["i"].data.tolist() == [1, 2**40]
    assert out["f"].dtype.isnative


def test_torch_files_that_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(SerializationError, match="refused to load 'torch.nn.modules.linear.Linear'"):
        load(tmp_path / "module.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(SerializationError, match="legacy format"):
        load(tmp_path / "legacy.pt")


def test_an_expanded_tensor_that_would_need_terabytes_is_refused():
    """A stride of 0 lets a few bytes stand for any size: the copy mt.load makes is bounded by the file."""
    torch = pytest.importorskip("torch")
    big = torch.zeros(1).expand(1 << 20, 1 << 20)          # 4 TiB as float32, one value on disk
    buf = io.BytesIO()
    torch.save({"w": big}, buf)
    buf.seek(0)
    with pytest.raises(SerializationError, match="would need"):
        load(buf)
    small = torch.arange(3.0).expand(4, 3)                  # an ordinary expanded tensor still loads
    buf = io.BytesIO()
    torch.save({"w": small}, buf)
    buf.seek(0)
    np.testing.assert_array_equal(load(buf)["w"].numpy(), small.numpy())
