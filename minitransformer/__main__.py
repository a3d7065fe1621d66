"""Command line: `minitransformer train|sample` (also `python -m minitransformer ...`).

    minitransformer train                      # a small GPT on the built-in corpus, then a sample
    minitransformer train --data input.txt --tokenizer bpe --vocab-size 1024 --max-iters 5000
    minitransformer train --out out --resume   # continue exactly where the last checkpoint stopped
    minitransformer sample --out out --prompt "def " --max-new-tokens 500 --top-p 0.9

Bad values give one line starting with "error:", not a traceback.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .train import TrainConfig

HELP = {
    "data": "UTF-8 text file to train on (default: the Python standard library's sources)",
    "tokenizer": "char or bpe", "vocab_size": "BPE vocabulary size", "out": "checkpoint directory",
    "resume": "continue from the checkpoint in --out", "config": "TOML file of options (command line wins)",
    "backend": "auto, numpy or numba", "device": "cpu or cuda", "grad_clip": "0 disables clipping",
    "sample_tokens": "tokens to sample after training (0: none)",
}


def _train_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a GPT on a text file", description="Train a GPT (nanoGPT's options).")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "history":
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if hint is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP.get(f.name))
            continue
        base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        p.add_argument(flag, type=base, default=None, metavar=f.name.upper(),
                       help=(HELP.get(f.name, "") + f" (default: {f.default})").strip())
    p.add_argument("--config", type=Path, default=None, help=HELP["config"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ValueError("--config needs Python 3.11+ (tomllib) or `pip install tomli`") from None
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config {path}: {e}") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    return values


def cmd_train(args: argparse.Namespace) -> None:
    explicit = {k: v for k, v in vars(args).items()
                if v is not None and k in TrainConfig.__dataclass_fields__}
    values = _load_toml(args.config) if args.config else {}
    values.update(explicit)
    cfg = TrainConfig(**values)
    result = __import__("minitransformer.train", fromlist=["train"]).train(
        cfg, overrides={k: v for k, v in values.items() if k != "resume"}, progress=not args.quiet)
    print(f"done: step {result['step']}, val loss {result['val_loss']:.4f}; checkpoint in {result['out']}")
    if cfg.sample_tokens:
        print("sample:")
        _stream(result["model"].eval(), result["tokenizer"], "\n", cfg.sample_tokens, 0.7, None, None)


def _stream(model: Any, tokenizer: Any, prompt: str, n: int, temperature: float, top_k: int | None,
            top_p: float | None) -> None:
    """Print the prompt, then each sampled token as soon as it exists."""
    import minitransformer as mt

    ids = tokenizer.encode(prompt) if prompt else [0]
    sys.stdout.write(prompt)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for tok in model.generate_stream(mt.tensor([ids]), n, temperature, top_k, top_p):
        t = int(tok.item())
        if tokenizer.kind == "bpe":
            sys.stdout.write(decoder.decode(tokenizer.vocab[t]))
        else:
            sys.stdout.write(tokenizer.decode([t]))
        sys.stdout.flush()
    sys.stdout.write(decoder.decode(b"", final=True) + "\n")


def cmd_sample(args: argparse.Namespace) -> None:
    import minitransformer as mt

    from .train import load_model

    model, tokenizer, _ = load_model(args.out)
    if args.seed is not None:
        mt.manual_seed(args.seed)
    _stream(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minitransformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    s = sub.add_parser("sample", help="stream text from a trained checkpoint")
    s.add_argument("--out", default="out", help="checkpoint directory")
    s.add_argument("--prompt", default="\n")
    s.add_argument("--max-new-tokens", type=int, default=500)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            cmd_train(args)
        else:
            cmd_sample(args)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
