"""Backend selection without Numba: the library imports, `auto` means numpy, and a GPT trains."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
        model = mt.nn.GPT(mt.nn.GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8))
        opt = model.configure_optimizers(0.1, 1e-2)
        x = mt.randint(0, 11, (2, 8))
        first = None
        for _ in range(20):
            _, loss = model(x, x)
            first = first if first is not None else loss.item()
            opt.zero_grad(); loss.backward(); opt.step()
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
