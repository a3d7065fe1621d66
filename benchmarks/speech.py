"""Speech to text on held-out voices: train `minitransformer asr` (defaults: 6,000 synthesised utterances,
the 4-layer Transformer encoder + CTC) within a 20-minute budget on this machine, then report the character
error rate (greedy and prefix beam search) overall and per test voice, the training curve, and the two
figures of docs/tasks/speech.md (a log-mel spectrogram, and the CTC posteriors of one utterance with its
greedy alignment).

    python benchmarks/speech.py            # writes benchmarks/results/speech-cpu.md and the PNGs
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
from _report import cpu_model, write_report  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench" / "asr"
DOCS = ROOT / "docs" / "tasks"


def figures(model, corpus) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minitransformer.tasks import speech as S

    test = corpus["test"]
    i = int(np.argmax([len(t) for t in test["text"][:40]]))  # a long utterance
    feats, text, voice = test["feats"][i].astype(np.float32), test["text"][i], test["voice"][i]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.imshow(feats.T, origin="lower", aspect="auto", cmap="magma")
    ax.set_xlabel("frame (10 ms)")
    ax.set_ylabel("mel bin")
    ax.set_title(f"log-mel features of \"{' '.join(text)}\" ({voice}, a test voice)", fontsize=9)
    fig.tight_layout()
    fig.savefig(DOCS / "speech-spectrogram.png", dpi=110)
    plt.close(fig)
    model.eval()
    lp = model(feats[None], np.array([len(feats)])).numpy()[0]                      # (T', 11)
    best = lp.argmax(-1)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    labels = ["blank"] + list(S.ALPHABET)
    ax.imshow(np.exp(lp).T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1)
    ax.plot(np.arange(len(best)), best, "r.", markersize=3)
    ax.set_yticks(range(11))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("encoder position (40 ms)")
    ax.set_title(f"CTC posteriors; red: the best class per position -> \"{S.decode_ids(S.greedy_decode(lp))}\"",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(DOCS / "speech-alignment.png", dpi=110)
    plt.close(fig)


def main() -> None:
    from minitransformer.tasks import speech as S

    cfg = S.SpeechTrainConfig(out=str(OUT / "model"), data_dir=str(OUT / "data"), max_iters=1500, eval_interval=250)
    t0 = time.perf_counter()
    corpus = S.load_corpus(cfg.data_dir, cfg.n_train, cfg.n_test, cfg.test_voices, cfg.noise, cfg.seed, True)
    synth_seconds = time.perf_counter() - t0
    if (OUT / "model").exists():
        shutil.rmtree(OUT / "model")
    result = S.train(cfg, progress=True)
    beam = S.evaluate(result["model"], corpus["test"], beam=8)
    figures(result["model"], corpus)
    if (Path(cfg.out) / "loss.png").is_file():
        shutil.copy(Path(cfg.out) / "loss.png", DOCS / "speech-curve.png")
    cpu = cpu_model()
    hours = corpus["frames"]["train"] / 100 / 3600
    curve = [f"| {h['step']} | {h['train']:.3f} | {h['val']:.3f} | {100 * h.get('cer', float('nan')):.2f}% |"
             for h in cfg.history]
    voices = [f"| {v} | {e['n']} | {100 * e['cer']:.2f}% | {100 * beam['per_voice'][v]['cer']:.2f}% | "
              f"{100 * e['sentence_accuracy']:.1f}% |" for v, e in result["per_voice"].items()]
    write_report(ROOT / "benchmarks" / "results" / "speech-cpu.md", [
        f"# Spoken digits to text, held-out voices ({time.strftime('%Y-%m-%d')})", "",
        f"Machine: {cpu}, {os.cpu_count()} cores, threads {os.environ.get('OMP_NUM_THREADS', 'default')}. "
        "Command: `python benchmarks/speech.py`.", "",
        f"Corpus (eSpeak NG, synthesised once in {synth_seconds:.0f} s, cached): {cfg.n_train:,} training "
        f"utterances ({hours:.1f} h, {len(corpus['train_voices'])} voices, {cfg.noise:.0%} with noise) and "
        f"{cfg.n_test:,} test utterances by {len(corpus['test_voices'])} other voices. Model: "
        f"{sum(p.numel() for p in result['model'].parameters()) / 1e6:.2f}M parameters "
        f"({cfg.num_layers} layers, d_model {cfg.d_model}); {cfg.max_iters} steps of batch {cfg.batch_size}.", "",
        f"**Training time: {result['train_seconds'] / 60:.1f} min** (budget 20). **Test CER: "
        f"{100 * result['cer']:.2f}% greedy, {100 * beam['cer']:.2f}% with prefix beam search (width 8)** "
        f"(target <= 5%); sentence accuracy {100 * result['sentence_accuracy']:.1f}% greedy, "
        f"{100 * beam['sentence_accuracy']:.1f}% beam.", "",
        "## Training curve", "", "CER here: greedy, on the first 200 test utterances.", "",
        "| step | train loss | val loss (test voices) | CER |", "|---|---|---|---|", *curve, "",
        "## Per test voice", "", "| voice | utterances | CER greedy | CER beam 8 | sentences right (greedy) |",
        "|---|---|---|---|---|", *voices, "",
        "Examples (reference -> greedy transcript): "
        + "; ".join(f"{r} -> {p}" for r, p in result["examples"])])


if __name__ == "__main__":
    main()
