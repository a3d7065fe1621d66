"""The demo really learns: a short run brings the loss well below its starting value ln(V)."""

from __future__ import annotations

import math

from minitransformer import demo


def test_demo_loss_falls(capsys):
    val = demo.main(steps=300)
    out = capsys.readouterr().out
    vocab = int(out.split("vocabulary ")[1].split(",")[0])
    assert val < math.log(vocab) - 1.5
    assert "sample:" in out
