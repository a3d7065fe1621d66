"""A PyTorch-style training loop for mt.nn.Transformer learns a small sequence-to-sequence task
(reversing digit strings), written exactly as one would with torch.nn."""

from __future__ import annotations

import numpy as np

import minitransformer as mt
from minitransformer import nn

V, BOS, T, D = 8, 7, 5, 32  # digits 0..6, a start token, strings of length 5


class Reverser(nn.Module):
    def __init__(self):
        super().__init__()
        self.src_emb = nn.Embedding(V, D)
        self.tgt_emb = nn.Embedding(V, D)
        self.pos = nn.SinusoidalPositionalEncoding(D, batch_first=True)
        self.transformer = nn.Transformer(d_model=D, nhead=4, num_encoder_layers=1, num_decoder_layers=1,
                                          dim_feedforward=64, dropout=0.0, batch_first=True)
        self.out = nn.Linear(D, V)

    def forward(self, src, tgt_in):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1])
        h = self.transformer(self.pos(self.src_emb(src)), self.pos(self.tgt_emb(tgt_in)), tgt_mask=mask)
        return self.out(h)


def test_transformer_learns_to_reverse():
    mt.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Reverser()
    opt = mt.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(250):
        src = rng.integers(0, 7, (32, T))
        tgt = src[:, ::-1].copy()
        tgt_in = np.concatenate([np.full((32, 1), BOS), tgt[:, :-1]], axis=1)
        logits = model(mt.tensor(src), mt.tensor(tgt_in))
        loss = loss_fn(logits.reshape(-1, V), mt.tensor(tgt.reshape(-1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # greedy decoding on fresh strings
    model.eval()
    src = rng.integers(0, 7, (64, T))
    out = np.full((64, 1), BOS)
    with mt.no_grad():
        for _ in range(T):
            nxt = model(mt.tensor(src), mt.tensor(out))[:, -1].argmax(dim=-1).numpy()
            out = np.concatenate([out, nxt[:, None]], axis=1)
    accuracy = (out[:, 1:] == src[:, ::-1]).mean()
    assert loss.item() < 0.3 and accuracy > 0.9, (loss.item(), accuracy)
