"""PyTorch-style training scripts (tests/pytorch_scripts/) run on minitransformer with only their import
lines rewritten, and on PyTorch as they are when it is installed: what they print, save and resume."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minitransformer.porting import rewrite_imports

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "pytorch_scripts"
ITER = re.compile(r"^iter (\d+): loss ([\d.]+)")
STEP = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def corpus() -> str:
    """A few kB of real text that every machine has: the source of the json package."""
    import json.decoder
    import json.encoder

    return inspect.getsource(json.decoder) + inspect.getsource(json.encoder)


def port(script: str, dest: Path, lib: str) -> Path:
    src = (SCRIPTS / script).read_text()
    out = dest / script
    out.write_text(rewrite_imports(src) if lib == "mt" else src)
    return out


def prepare(folder: Path) -> Path:
    text = corpus()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.uint16)
    n = int(len(ids) * 0.9)
    folder.mkdir(parents=True, exist_ok=True)
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    (folder / "vocab_size.txt").write_text(str(len(chars)))
    return folder


def run(script: Path, *args: str, cwd: Path, timeout: int = 240) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::UserWarning"}
    proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{script.name} {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def iters(out: str) -> dict[int, float]:
    return {int(m[1]): float(m[2]) for line in out.splitlines() if (m := ITER.match(line))}


def test_imports_are_the_only_change():
    src = (SCRIPTS / "char_train.py").read_text()
    ported = rewrite_imports(src)
    changed = [(a, b) for a, b in zip(src.splitlines(), ported.splitlines(), strict=True) if a != b]
    assert changed and all(a.lstrip().startswith(("import torch", "from torch")) for a, _ in changed)
    assert all("minitransformer" in b and "torch" not in b.replace("as torch", "") for _, b in changed)


@pytest.mark.slow
def test_char_train_saves_resumes_and_compiles(tmp_path):
    data = prepare(tmp_path / "data")
    script = port("char_train.py", tmp_path, "mt")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    common = [f"--data_dir={data}", f"--out_dir={out_dir}", "--eval_interval=10"]
    first = run(script, *common, "--max_iters=20", cwd=tmp_path)
    losses = iters(first)
    assert sorted(losses) == list(range(21))
    assert losses[20] < losses[0] - 0.3, "the loss should fall over 20 steps"
    assert "saved" in first and (out_dir / "ckpt.pt").is_file()
    evals = [STEP.match(line) for line in first.splitlines() if STEP.match(line)]
    assert [int(m[1]) for m in evals] == [0, 10, 20]

    import minitransformer as mt

    ckpt = mt.load(out_dir / "ckpt.pt")
    assert ckpt["iter_num"] == 20 and isinstance(ckpt["best_val_loss"], mt.Tensor)
    assert ckpt["config"]["max_iters"] == 20 and ckpt["config"]["dtype"] == "float16"
    assert set(ckpt["optimizer"]) == {"state", "param_groups"}
    # the tied weight stays one array, as in PyTorch
    assert np.shares_memory(ckpt["model"]["head.weight"].numpy(), ckpt["model"]["wte.weight"].numpy())

    resumed = iters(run(script, *common, "--init_from=resume", "--max_iters=25", cwd=tmp_path))
    assert min(resumed) == 20 and max(resumed) == 25
    # it continues where it stopped, not from the random initialisation
    assert abs(resumed[20] - losses[20]) < abs(resumed[20] - losses[0])

    # torch.compile wraps the model: the saved keys carry `_orig_mod.`, which resume strips
    shutil.rmtree(out_dir)
    out_dir.mkdir()
    run(script, *common, "--max_iters=10", "--compile=True", cwd=tmp_path)
    keys = list(mt.load(out_dir / "ckpt.pt")["model"])
    assert keys and all(k.startswith("_orig_mod.") for k in keys)
    assert iters(run(script, *common, "--init_from=resume", "--max_iters=12", cwd=tmp_path))


@pytest.mark.slow
def test_char_train_gives_pytorchs_losses(tmp_path):
    """Same initial weights and batches (drawn from NumPy): the per-step losses of the two libraries agree to
    float32 roundoff accumulated over the steps, and minitransformer resumes from PyTorch's own checkpoint."""
    pytest.importorskip("torch")
    data = prepare(tmp_path / "data")
    results = {}
    for lib in ("torch", "mt"):
        d = tmp_path / lib
        d.mkdir()
        script = port("char_train.py", d, lib)
        (d / "out").mkdir()
        out = run(script, f"--data_dir={data}", f"--out_dir={d / 'out'}", "--deterministic=True", "--max_iters=30",
                  "--eval_interval=15", cwd=d)
        results[lib] = iters(out)
    assert sorted(results["mt"]) == sorted(results["torch"]) == list(range(31))
    ours, theirs = np.array(list(results["mt"].values())), np.array(list(results["torch"].values()))
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-4)
    assert ours[-1] < ours[0] - 0.3

    # PyTorch's checkpoint file, resumed by minitransformer's copy of the script
    shutil.copy(tmp_path / "torch" / "out" / "ckpt.pt", tmp_path / "mt" / "out" / "ckpt.pt")
    resumed = iters(run(tmp_path / "mt" / "char_train.py", f"--data_dir={data}", f"--out_dir={tmp_path / 'mt' / 'out'}",
                        "--init_from=resume", "--max_iters=32", "--eval_interval=100", cwd=tmp_path / "mt"))
    assert min(resumed) == 30
    assert abs(resumed[30] - results["torch"][30]) < abs(resumed[30] - results["torch"][0])


@pytest.mark.slow
def test_loader_train_with_worker_processes(tmp_path):
    text = tmp_path / "input.txt"
    text.write_text(corpus())
    script = port("loader_train.py", tmp_path, "mt")
    out = run(script, str(text), str(tmp_path / "model.pt"), "60", "2", cwd=tmp_path)
    m = re.search(r"first loss ([\d.]+) last loss ([\d.]+) reload identical (\w+)", out)
    assert m, out
    assert float(m[2]) < float(m[1]) - 0.5 and m[3] == "True"
    import minitransformer as mt

    state = mt.load(tmp_path / "model.pt")
    assert list(state) == ["emb.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]
    json.dumps({k: list(v.shape) for k, v in state.items()})


def test_port_command_rewrites_a_folder(tmp_path):
    src = tmp_path / "project"
    (src / "pkg").mkdir(parents=True)
    shutil.copy(SCRIPTS / "loader_train.py", src / "pkg" / "train.py")
    (src / "notes.txt").write_text("import torch\n")                 # not Python: left out
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "minitransformer", "port", str(src), "--to", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    ported = (tmp_path / "out" / "project" / "pkg" / "train.py").read_text()
    assert ported == rewrite_imports((SCRIPTS / "loader_train.py").read_text())
    assert not (tmp_path / "out" / "project" / "notes.txt").exists()
    r = subprocess.run([sys.executable, "-m", "minitransformer", "port", str(src)], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: port: give --to") and "Traceback" not in r.stderr


@pytest.mark.slow
def test_char_train_under_ddp_with_the_run_launcher(tmp_path):
    """`minitransformer run -n 2` sets RANK/WORLD_SIZE before the script starts; the script's DDP keeps the
    two ranks' weights identical while each draws its own batches."""
    pytest.importorskip("mpi4py")
    if shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")) is None:
        pytest.skip("mpiexec (mpich) is not installed")
    data = prepare(tmp_path / "data")
    script = port("char_train.py", tmp_path, "mt")
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::UserWarning"}
    r = subprocess.run([sys.executable, "-m", "minitransformer", "run", "-n", "2", str(script),
                        f"--data_dir={data}", f"--out_dir={tmp_path / 'out'}", "--max_iters=6", "--eval_interval=3"],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    sums = re.findall(r"rank (\d) weight checksum (\S+)", r.stdout)
    assert sorted(rank for rank, _ in sums) == ["0", "1"], r.stdout[-3000:]
    assert sums[0][1] == sums[1][1], sums
    assert len(iters(r.stdout)) == 7 and "saved" in r.stdout        # only rank 0 logs and saves
