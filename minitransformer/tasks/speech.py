"""Speech to text (`minitransformer asr ...`): spoken digit strings transcribed by a Transformer encoder
trained with CTC, all on the CPU and offline.

Data: eSpeak NG (`apt-get install espeak-ng`) speaks random strings of 3-10 digits with many voices, each a
language (en, en-us, en-gb-scotland, ...) plus a variant (+m1..m7, +f1..f5, named ones), at random speed
(-s), pitch (-p) and word gap (-g); a fraction of the training utterances get white noise at 15-35 dB SNR.
The split is by voice: the test voices never speak in training. The corpus (log-mel features, labels,
voices, with a manifest) is generated once into --data-dir and reused.

Features (computed here in NumPy): 25 ms Hann windows every 10 ms, power spectrum by FFT, 80 triangular mel
filters, log, then mean and variance normalisation per utterance and mel bin; SpecAugment (two frequency
masks, two time masks) on training batches.

Model: frames stacked four at a time and projected (a strided linear front end: 40 ms per position),
sinusoidal positions, a pre-LN mt.nn.TransformerEncoder with padding masks, a linear layer over the ten
digits plus the CTC blank (id 0). Loss: F.ctc_loss (kernels/*/ctc.py). Decoding: greedy (best class per
position, repeats merged, blanks dropped) or prefix beam search. Metrics: character error rate (edit
distance over reference length, summed over the test set) and sentence accuracy.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import subprocess
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import creation
from ..autograd import no_grad
from ..io.atomic import atomic_write_bytes
from ..nn import functional as F
from ..nn.layers import LayerNorm, Linear, sinusoidal_table
from ..nn.module import Module
from ..nn.transformer import TransformerEncoder, TransformerEncoderLayer
from ..tensor import Tensor
from ..training.config import LoopConfig, check_heads, job_config, model_field
from ..training.loop import Job
from .steps import build, fit_timed, load_trained, report_text, start_run

BLANK = 0
ALPHABET = "0123456789"          # class c + 1 is ALPHABET[c]; class 0 is the blank
LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
             "en-us-nyc")
VARIANTS = tuple([f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 6)]
                 + ["Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Storm"])
N_MELS, WIN_MS, HOP_MS, STACK = 80, 25, 10, 4


# ---- text <-> labels, metrics ----------------------------------------------------------------------------
def encode(text: str) -> list[int]:
    """'3914' -> class ids [4, 10, 2, 5] (the blank is 0)."""
    bad = sorted(set(text) - set(ALPHABET))
    if bad:
        raise ValueError(f"transcripts are digit strings; {''.join(bad)!r} is not a digit")
    return [ALPHABET.index(c) + 1 for c in text]


def decode_ids(ids: list[int]) -> str:
    return "".join(ALPHABET[i - 1] for i in ids)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn a into b."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


def cer(predictions: list[str], references: list[str]) -> float:
    """Character error rate: total edit distance over total reference length."""
    total = sum(len(r) for r in references)
    return sum(edit_distance(p, r) for p, r in zip(predictions, references, strict=True)) / max(total, 1)


# ---- decoding ----------------------------------------------------------------------------------------------
def greedy_decode(log_probs: np.ndarray, length: int | None = None) -> list[int]:
    """log_probs (T, C) -> the best class per frame, repeats merged, blanks dropped."""
    best = log_probs[:length].argmax(axis=-1)
    out, prev = [], BLANK
    for c in best:
        if c != prev and c != BLANK:
            out.append(int(c))
        prev = c
    return out


def beam_decode(log_probs: np.ndarray, length: int | None = None, beam: int = 8) -> list[int]:
    """CTC prefix beam search: keeps the `beam` most probable label prefixes, each with the log
    probabilities of its alignments so far that end in a blank (pb) and in its last label (pnb); a label
    equal to the prefix's last one extends it only after a blank. Returns the most probable prefix."""
    lp = log_probs[:length]
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}
    for t in range(lp.shape[0]):
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], which: int, value: float, nxt: dict = nxt) -> None:
            entry = nxt.setdefault(prefix, [-np.inf, -np.inf])
            entry[which] = np.logaddexp(entry[which], value)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, 0, total + lp[t, BLANK])                                 # a blank: same prefix
            if prefix:
                add(prefix, 1, pnb + lp[t, prefix[-1]])                          # the last label repeated
            for c in range(1, lp.shape[1]):
                # after a blank any label extends; without one, only a different label does
                add(prefix + (c,), 1, (pb if prefix and c == prefix[-1] else total) + lp[t, c])
        ranked = sorted(((p, (v[0], v[1])) for p, v in nxt.items()), key=lambda kv: -np.logaddexp(*kv[1]))
        beams = dict(ranked[:beam])
    return list(max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))[0])


# ---- audio and features --------------------------------------------------------------------------------------
def read_wav(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV file (path or bytes) -> (mono float32 samples in [-1, 1], sample rate)."""
    name = "WAV data" if isinstance(source, bytes) else str(source)
    try:
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{name}: {8 * w.getsampwidth()}-bit samples; 16-bit PCM expected")
            sr, n, ch = w.getframerate(), w.getnframes(), w.getnchannels()
            pcm = np.frombuffer(w.readframes(n), dtype="<i2").astype(np.float32) / 32768.0
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{name}: not a readable WAV file ({e})") from None
    return (pcm.reshape(-1, ch).mean(axis=1) if ch > 1 else pcm), sr


def mel_filterbank(sr: int, n_fft: int, n_mels: int = N_MELS, fmin: float = 20.0,
                   fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters equally spaced on the mel scale, mel = 2595 log10(1 + f/700)."""
    fmax = fmax or sr / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))                   # n_mels + 2 corner frequencies
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


def log_mel(audio: np.ndarray, sr: int, n_mels: int = N_MELS) -> np.ndarray:
    """audio (n,) -> normalised log-mel features (frames, n_mels) float32: 25 ms Hann windows every 10 ms,
    |FFT|^2, mel filters, log, then zero mean and unit variance per mel bin over the utterance."""
    win, hop = int(round(sr * WIN_MS / 1000)), int(round(sr * HOP_MS / 1000))
    n_fft = 1 << (win - 1).bit_length()                                          # next power of two
    audio = np.asarray(audio, dtype=np.float64)
    if len(audio) < win:
        audio = np.pad(audio, (0, win - len(audio)))
    n_frames = 1 + (len(audio) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]           # (frames, win)
    frames = audio[idx] * np.hanning(win)[None, :]
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2                    # (frames, n_fft/2 + 1)
    mel = power @ mel_filterbank(sr, n_fft, n_mels).T                            # (frames, n_mels)
    feats = np.log(mel + 1e-10)                                                  # floor: silence gives -23, not -inf
    feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-5)
    return feats.astype(np.float32)


def spec_augment(feats: np.ndarray, rng: np.random.Generator, freq_masks: int = 2, freq_width: int = 10,
                 time_masks: int = 2, time_width: int = 20) -> np.ndarray:
    """A copy of feats (frames, mels) with random bands of mel bins and of frames set to 0 (the mean)."""
    out = feats.copy()
    T, M = out.shape
    for _ in range(freq_masks):
        w = int(rng.integers(0, freq_width + 1))
        f0 = int(rng.integers(0, max(1, M - w)))
        out[:, f0:f0 + w] = 0.0
    for _ in range(time_masks):
        w = int(rng.integers(0, min(time_width, T // 10) + 1))
        t0 = int(rng.integers(0, max(1, T - w)))
        out[t0:t0 + w] = 0.0
    return out


# ---- synthesis and the corpus ------------------------------------------------------------------------------
def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("the speech corpus is synthesised by eSpeak NG, which is not installed: "
                           "apt-get install espeak-ng (Debian/Ubuntu), brew install espeak-ng (macOS)")
    return path


def synthesize(text: str, voice: str, speed: int, pitch: int, gap: int) -> tuple[np.ndarray, int]:
    """eSpeak NG speaking `text` -> (samples, sample rate)."""
    r = subprocess.run([espeak_path(), "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), "-g", str(gap),
                        text], capture_output=True, check=False)
    if r.returncode or not r.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {r.stderr.decode(errors='replace').strip()}")
    return read_wav(r.stdout)


def all_voices() -> list[str]:
    return [f"{lang}+{var}" for lang in LANGUAGES for var in VARIANTS]


def split_voices(n_test: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training voices, test voices): n_test language+variant pairs held out, never heard in training."""
    voices = all_voices()
    test = set(np.random.default_rng(seed).choice(len(voices), n_test, replace=False).tolist())
    return [v for i, v in enumerate(voices) if i not in test], [v for i, v in enumerate(voices) if i in test]


def _utterance(args: tuple[str, str, int, int, int, float, int]) -> tuple[np.ndarray, str, str]:
    digits, voice, speed, pitch, gap, snr, seed = args
    audio, sr = synthesize(" ".join(digits), voice, speed, pitch, gap)
    if snr > 0:  # white noise at snr dB below the speech's power
        noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
        audio = audio + noise * np.sqrt(np.mean(audio**2) / 10 ** (snr / 10))
    return log_mel(audio, sr).astype(np.float16), digits, voice


def make_split(n: int, voices: list[str], rng: np.random.Generator, noise_fraction: float,
               workers: int = 8) -> dict[str, Any]:
    """n random utterances spoken by `voices` -> {"feats": list of (frames, 80) float16, "text", "voice"}."""
    jobs = []
    for _ in range(n):
        digits = "".join(rng.choice(list(ALPHABET), int(rng.integers(3, 11))))
        snr = float(rng.uniform(15, 35)) if rng.random() < noise_fraction else 0.0
        jobs.append((digits, voices[int(rng.integers(len(voices)))], int(rng.integers(120, 221)),
                     int(rng.integers(20, 81)), int(rng.integers(0, 9)), snr, int(rng.integers(2**31))))
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(_utterance, jobs))
    return {"feats": [d[0] for d in done], "text": [d[1] for d in done], "voice": [d[2] for d in done]}


def _save_split(path: Path, split: dict[str, Any]) -> None:
    lengths = np.array([len(f) for f in split["feats"]], np.int64)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, feats=np.concatenate(split["feats"]), lengths=lengths, text=np.array(split["text"]),
             voice=np.array(split["voice"]))
    tmp.replace(path)


def _load_split(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        offsets = np.concatenate([[0], np.cumsum(z["lengths"])])
        feats = z["feats"]
        return {"feats": [feats[offsets[i]:offsets[i + 1]] for i in range(len(z["lengths"]))],
                "text": z["text"].tolist(), "voice": z["voice"].tolist()}


def load_corpus(data_dir: str | Path, n_train: int, n_test: int, test_voices: int = 12, noise: float = 0.3,
                seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """The corpus for these settings: read from data_dir when a manifest with the same settings is there,
    otherwise synthesised (a few milliseconds per utterance on each of 8 threads) and saved first."""
    settings = {"n_train": n_train, "n_test": n_test, "test_voices": test_voices, "noise": noise, "seed": seed,
                "languages": LANGUAGES, "variants": VARIANTS, "features": [N_MELS, WIN_MS, HOP_MS], "version": 1}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    d = Path(data_dir) / f"digits-{key}"
    manifest = d / "manifest.json"
    if manifest.is_file():
        return {"train": _load_split(d / "train.npz"), "test": _load_split(d / "test.npz"),
                **json.loads(manifest.read_text())}
    train_voices, test_voice_list = split_voices(test_voices, seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    if progress:
        print(f"synthesising {n_train:,} + {n_test:,} utterances with eSpeak NG into {d} (once)...", flush=True)
    train = make_split(n_train, train_voices, rng, noise)
    test = make_split(n_test, test_voice_list, rng, 0.0)
    d.mkdir(parents=True, exist_ok=True)
    _save_split(d / "train.npz", train)
    _save_split(d / "test.npz", test)
    info = {"settings": settings, "train_voices": train_voices, "test_voices": test_voice_list,
            "seconds": round(time.perf_counter() - t0, 1),
            "frames": {"train": int(sum(len(f) for f in train["feats"])),
                       "test": int(sum(len(f) for f in test["feats"]))}}
    atomic_write_bytes(manifest, json.dumps(info, indent=1).encode())
    return {"train": train, "test": test, **info}


def pad_features(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """-> (B, T_max, mels) float32 zero-padded, and the lengths (B,)."""
    lengths = np.array([len(f) for f in feats], np.int64)
    out = np.zeros((len(feats), int(lengths.max()), feats[0].shape[1]), np.float32)
    for i, f in enumerate(feats):
        out[i, :len(f)] = f
    return out, lengths


# ---- the model -----------------------------------------------------------------------------------------------
@dataclass
class SpeechConfig:
    n_mels: int = N_MELS
    stack: int = STACK
    d_model: int = 144
    nhead: int = 4
    num_layers: int = 4
    dim_feedforward: int = 576
    dropout: float = 0.1
    max_len: int = 1024          # positions after stacking (40 s of audio)


class SpeechTransformer(Module):
    def __init__(self, cfg: SpeechConfig) -> None:
        super().__init__()
        self.config = cfg
        self.frontend = Linear(cfg.n_mels * cfg.stack, cfg.d_model)
        layer = TransformerEncoderLayer(cfg.d_model, cfg.nhead, cfg.dim_feedforward, cfg.dropout, "gelu",
                                        batch_first=True, norm_first=True)
        self.encoder = TransformerEncoder(layer, cfg.num_layers, LayerNorm(cfg.d_model))
        self.head = Linear(cfg.d_model, len(ALPHABET) + 1)
        self.register_buffer("pe", Tensor(sinusoidal_table(cfg.max_len, cfg.d_model)), persistent=False)

    def lengths_after_stacking(self, lengths: np.ndarray) -> np.ndarray:
        return -(-np.asarray(lengths) // self.config.stack)                           # ceil

    def forward(self, feats: np.ndarray, lengths: np.ndarray) -> Tensor:
        """feats (B, T, mels) padded, lengths (B,) -> log-probabilities (B, T', classes), T' = ceil(T / stack)."""
        B, T, M = feats.shape
        k = self.config.stack
        Tp = -(-T // k)
        if Tp > self.config.max_len:
            raise ValueError(f"an utterance of {T} frames is longer than the model's {self.config.max_len * k}")
        x = np.zeros((B, Tp * k, M), np.float32)
        x[:, :T] = feats
        x = self.frontend(creation.tensor(x.reshape(B, Tp, k * M)))                  # (B, T', d): 4 frames per position
        x = x * math.sqrt(self.config.d_model) + self.pe[:Tp]
        pad = np.arange(Tp)[None, :] >= self.lengths_after_stacking(lengths)[:, None]   # True at padding
        h = self.encoder(x, src_key_padding_mask=pad)
        return F.log_softmax(self.head(h), dim=-1)


@no_grad()
def transcribe_features(model: SpeechTransformer, feats: list[np.ndarray], beam: int = 1,
                        batch_size: int = 64) -> list[str]:
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(feats), batch_size):
        x, lengths = pad_features([f.astype(np.float32) for f in feats[i:i + batch_size]])
        lp = model(x, lengths).numpy()
        for row, n in zip(lp, model.lengths_after_stacking(lengths), strict=True):
            ids = greedy_decode(row, int(n)) if beam <= 1 else beam_decode(row, int(n), beam)
            out.append(decode_ids(ids))
    model.train(was_training)
    return out


# ---- the job -------------------------------------------------------------------------------------------------
@job_config
class SpeechTrainConfig(LoopConfig):
    """Options of `minitransformer asr train`."""

    data_dir: str = "out/asr-data"     # where the synthesised corpus is cached
    n_train: int = 6000
    n_test: int = 600
    test_voices: int = 12
    noise: float = 0.3                 # fraction of training utterances with added noise
    # the model; its options are flat (--d-model), the others keep SpeechConfig's defaults
    model: SpeechConfig = model_field(SpeechConfig(),
                                      options=("d_model", "nhead", "num_layers", "dim_feedforward", "dropout"))
    specaugment: bool = True
    beam: int = 1                      # decoding for evaluation and transcription: 1 = greedy
    max_iters: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup_iters: int = 300
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 4
    out: str = "out/asr"

    POSITIVE = LoopConfig.POSITIVE + ("n_train", "n_test", "d_model", "nhead", "num_layers", "dim_feedforward",
                                      "beam")
    RANGES = {**LoopConfig.RANGES, "noise": (0, 1, True), "test_voices": (1, math.inf, True), "dropout": (0, 1, True)}
    BELOW_ONE = LoopConfig.BELOW_ONE + ("dropout",)

    def validate(self) -> None:
        super().validate()
        check_heads(self.model, "d_model", "nhead")
        if self.test_voices < 1 or self.test_voices >= len(all_voices()):
            raise ValueError(f"--test-voices must be between 1 and {len(all_voices()) - 1}, got {self.test_voices}")


def evaluate(model: SpeechTransformer, split: dict[str, Any], beam: int = 1) -> dict[str, Any]:
    t0 = time.perf_counter()
    pred = transcribe_features(model, split["feats"], beam)
    ref = split["text"]
    per_voice: dict[str, list[int]] = {}
    for p, r, v in zip(pred, ref, split["voice"], strict=True):
        e = per_voice.setdefault(v, [0, 0, 0, 0])
        e[0] += edit_distance(p, r)
        e[1] += len(r)
        e[2] += p == r
        e[3] += 1
    right = [p == r for p, r in zip(pred, ref, strict=True)]
    return {"cer": cer(pred, ref), "sentence_accuracy": float(np.mean(right)),
            "per_voice": {v: {"cer": e[0] / e[1], "sentence_accuracy": e[2] / e[3], "n": e[3]}
                          for v, e in sorted(per_voice.items())},
            "examples": list(zip(ref[:8], pred[:8], strict=True)), "n_test": len(ref), "beam": beam,
            "seconds": time.perf_counter() - t0}


def train(cfg: SpeechTrainConfig, overrides: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the speech model per `cfg`, then evaluate it on the held-out voices."""
    cfg, resumed = start_run(cfg, overrides, progress)
    corpus = load_corpus(cfg.data_dir, cfg.n_train, cfg.n_test, cfg.test_voices, cfg.noise, cfg.seed, progress)
    model = build(SpeechTransformer, cfg.model, resumed)
    train_split, test_split = corpus["train"], corpus["test"]
    labels = {name: [encode(t) for t in s["text"]] for name, s in (("train", train_split), ("val", test_split))}
    feats = {"train": train_split["feats"], "val": test_split["feats"]}

    def loss(which: str, rng: np.random.Generator) -> Tensor:
        ix = rng.integers(0, len(feats[which]), cfg.batch_size)
        batch = [feats[which][i].astype(np.float32) for i in ix]
        if which == "train" and cfg.specaugment:
            batch = [spec_augment(f, rng) for f in batch]
        x, lengths = pad_features(batch)
        lp = model(x, lengths)                                                       # (B, T', C)
        tl = np.array([len(labels[which][i]) for i in ix])
        tg = np.zeros((len(ix), int(tl.max())), np.int64)
        for r, i in enumerate(ix):
            tg[r, :tl[r]] = labels[which][i]
        return F.ctc_loss(lp.transpose(0, 1), tg, model.lengths_after_stacking(lengths), tl, blank=BLANK,
                          zero_infinity=True)

    probe = {k: [v[i] for i in range(min(200, len(test_split["text"])))] for k, v in test_split.items()}

    def metrics() -> dict[str, float]:
        return {"cer": evaluate(model, probe)["cer"]}

    n_params = sum(p.numel() for p in model.parameters())
    frames = sum(len(f) for f in train_split["feats"])
    job = Job(model, loss, {"task": "asr", "model_config": asdict(model.config), "test_voices": corpus["test_voices"]},
              metrics=metrics,
              describe=f"data: {len(train_split['text']):,} training utterances ({frames / 100 / 3600:.1f} h, "
                       f"{len(corpus['train_voices'])} voices) and {len(test_split['text']):,} test utterances "
                       f"({len(corpus['test_voices'])} other voices); model: {n_params / 1e6:.2f}M parameters",
              tokens_per_step=cfg.batch_size * cfg.grad_accum)
    result = fit_timed(cfg, job, resumed, progress)
    return {**result, **evaluate(model, test_split, cfg.beam), "model": model}


def load(out: str | Path) -> tuple[SpeechTransformer, dict[str, Any]]:
    return load_trained(out, "asr", "a speech model's", SpeechTransformer, SpeechConfig)


def evaluate_checkpoint(out: str | Path, beam: int = 1) -> dict[str, Any]:
    model, doc = load(out)
    c = doc["train_config"]
    corpus = load_corpus(c["data_dir"], c["n_train"], c["n_test"], c["test_voices"], c["noise"], c["seed"], True)
    return evaluate(model, corpus["test"], beam)


# ---- the command line's view (minitransformer asr ...) -----------------------------------------------------------
CONFIG = SpeechTrainConfig
HELP = {"data_dir": "folder for the synthesised corpus (made once per setting)",
        "n_train": "training utterances to synthesise", "n_test": "test utterances (held-out voices)",
        "test_voices": "language+variant voices held out for the test set",
        "noise": "fraction of training utterances with white noise at 15-35 dB SNR",
        "specaugment": "mask random bands of mel bins and frames in training batches",
        "beam": "CTC prefix beam width for evaluation and transcription (1: greedy)"}
# the options of `asr eval` and `asr transcribe` besides --out
EVAL_OPTIONS: tuple[str, ...] = ("beam",)


def eval_options(values: dict[str, Any]) -> dict[str, Any]:
    return {"beam": values.get("beam", 1)}


def predict(out: str | Path, files: list[str], beam: int = 1) -> list[str]:
    """Transcribe WAV files (16-bit PCM, any sample rate; mono or averaged to mono)."""
    model, _ = load(out)
    feats = []
    for f in files:
        audio, sr = read_wav(f)
        feats.append(log_mel(audio, sr))
    return transcribe_features(model, feats, beam)


def report(result: dict[str, Any]) -> str:
    how = "greedy" if result["beam"] <= 1 else f"beam {result['beam']}"
    lines = [f"CER {100 * result['cer']:.2f}% and sentence accuracy {100 * result['sentence_accuracy']:.1f}% on "
             f"{result['n_test']:,} utterances by held-out voices ({how})",
             "per voice: " + ", ".join(f"{v} {100 * e['cer']:.1f}%" for v, e in result["per_voice"].items()),
             "examples (reference -> transcript): " + "; ".join(f"{r} -> {p}" for r, p in result["examples"])]
    return report_text(result, lines)
