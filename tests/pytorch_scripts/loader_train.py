"""A Dataset / DataLoader trainer in the style of PyTorch projects (minGPT's trainer): a map-style dataset of
text windows, a RandomSampler with replacement and an effectively endless num_samples, worker processes,
pinned memory, a state_dict saved with torch.save and loaded into a fresh model. Written against `torch`;
the tests run it on minitransformer with its imports rewritten.

    python loader_train.py TEXT_FILE OUT_FILE ITERS NUM_WORKERS
"""

import sys

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from torch.utils.data.dataloader import DataLoader


class CharWindows(Dataset):
    def __init__(self, text, block_size):
        chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.vocab_size = len(chars)
        self.data = text
        self.block_size = block_size

    def __len__(self):
        return len(self.data) - self.block_size

    def __getitem__(self, idx):
        chunk = [self.stoi[c] for c in self.data[idx:idx + self.block_size + 1]]
        return torch.tensor(chunk[:-1], dtype=torch.long), torch.tensor(chunk[1:], dtype=torch.long)


class Bigram(nn.Module):
    def __init__(self, vocab_size, width=32):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, vocab_size))

    def forward(self, idx, targets=None):
        logits = self.mlp(self.emb(idx))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


if __name__ == "__main__":
    text_file, out_file, iters, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    ds = CharWindows(open(text_file).read(), block_size=16)
    model = Bigram(ds.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loader = DataLoader(ds, sampler=torch.utils.data.RandomSampler(ds, replacement=True, num_samples=int(1e10)),
                        shuffle=False, pin_memory=True, batch_size=32, num_workers=workers)
    model.train()
    it = iter(loader)
    first = None
    for step in range(iters):
        x, y = [t.to("cpu") for t in next(it)]
        _, loss = model(x, y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        first = loss.item() if first is None else first
        if step % 10 == 0:
            print(f"iter {step}: train loss {loss.item():.5f}")
    del it
    torch.save(model.state_dict(), out_file)
    fresh = Bigram(ds.vocab_size)
    fresh.load_state_dict(torch.load(out_file))
    fresh.eval()
    model.eval()
    probe = torch.arange(ds.vocab_size).view(1, -1)
    with torch.no_grad():
        same = bool((fresh(probe)[0] == model(probe)[0]).all())
    print(f"first loss {first:.4f} last loss {loss.item():.4f} reload identical {same}")
