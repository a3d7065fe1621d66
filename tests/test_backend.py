"""Backend selection without Numba: the library imports, `auto` means numpy, and a GPT trains with AdamW steps
that follow a float64 AdamW written out here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_without_numba_auto_means_numpy_and_training_works():
    script = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None  # as if Numba were not installed
        import minitransformer as mt
        assert mt.backend.available() == ["numpy"], mt.backend.available()
        assert "numba" not in mt.backend.describe().split("available:")[1]
        assert mt.backend.kernel("softmax_forward").__module__.endswith("reference.softmax")
        assert mt.backend.warmup() == 0.0
        try:
            mt.backend.use("numba")
        except ValueError as e:
            assert "Numba is not installed" in str(e)
        else:
            raise AssertionError("use('numba') should fail without Numba")
        import numpy as np
        model = mt.nn.GPT(mt.nn.GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8))
        opt = model.configure_optimizers(0.1, 1e-2)
        # AdamW written out in float64 on copies of the weights, fed the model's gradients: the reference
        # kernels' steps must follow it (an adam_update without the bias correction, planted, fails here)
        ref = [[p, p.numpy().astype(np.float64), 0.0, 0.0, g] for g in opt.param_groups for p in g["params"]]
        x = mt.randint(0, 11, (2, 8))
        first = None
        for t in range(1, 21):
            _, loss = model(x, x)
            first = first if first is not None else loss.item()
            opt.zero_grad(); loss.backward(); opt.step()
            for r in ref:
                p, w, m, v, group = r
                g = p.grad.numpy().astype(np.float64)
                (b1, b2), lr, wd, eps = group["betas"], group["lr"], group["weight_decay"], group["eps"]
                w = w * (1 - lr * wd)
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
                r[1:4] = w, m, v
                np.testing.assert_allclose(p.numpy(), w, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
        assert loss.item() < first
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_environment_variable_selects_the_backend():
    script = "import minitransformer as mt; print(mt.backend.current())"
    env = {**__import__("os").environ, "MINITRANSFORMER_BACKEND": "numpy"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "numpy", out.stderr


TIERS = {"numpy": "minitransformer.kernels.reference", "numba": "minitransformer.kernels.cpu",
         "cuda": "minitransformer.kernels.cuda"}


def matrix_markdown(matrix: dict[str, list[str]]) -> str:
    """The kernel matrix as docs/kernels.md prints it: one row per kernel, a column per tier."""
    rows = ["| kernel | reference (numpy) | cpu (numba) | cuda |", "|---|:-:|:-:|:-:|"]
    for name, tiers in matrix.items():
        rows.append(f"| `{name}` | " + " | ".join("yes" if t in tiers else "--" for t in TIERS) + " |")
    return "\n".join(rows)


def test_kernel_tables_are_explicit_and_honest():
    import importlib
    import inspect

    from minitransformer import backend

    pytest.importorskip("numba")
    matrix = backend.matrix()
    assert matrix, "no kernels found"
    for name, tiers in matrix.items():
        assert "numpy" in tiers, f"{name} has no reference implementation"
    for tier, package in TIERS.items():
        pkg = importlib.import_module(package)
        for name, fn in pkg.KERNELS.items():
            assert fn.__name__ == name
            # a tier lists only the kernels written in it: a reference function re-exported under a faster tier's
            # name would be labelled with the wrong tier by the profiler and the graph pictures
            assert fn.__module__.startswith(package + "."), f"{tier} lists {name} from {fn.__module__}"
        # and every kernel written in the tier's files is listed
        for file in backend.KERNEL_FILES:
            try:
                mod = importlib.import_module(f"{package}.{file}")
            except ModuleNotFoundError:
                continue
            for fname, obj in inspect.getmembers(mod, inspect.isfunction):
                if (obj.__module__ == mod.__name__ and fname.endswith(("_forward", "_backward", "_update"))
                        and not fname.startswith("_") and not fname[-1].isdigit()):
                    assert fname in pkg.KERNELS, f"{package}.{file}.{fname} is not in its tier's KERNELS"


def test_docs_print_the_kernel_matrix():
    from minitransformer import backend

    pytest.importorskip("numba")
    docs = (Path(__file__).resolve().parent.parent / "docs" / "kernels.md").read_text()
    table = matrix_markdown(backend.matrix())
    assert table in docs, "docs/kernels.md's kernel matrix differs from the tiers' tables; print it with\n" + table
