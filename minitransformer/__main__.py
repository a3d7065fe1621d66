"""Command line (also `python -m minitransformer ...`).

    minitransformer train                      # a small GPT on the built-in corpus, then a sample
    minitransformer train --data input.txt --tokenizer bpe --vocab-size 1024 --max-iters 5000
    minitransformer train --out out --resume   # continue exactly where the last checkpoint stopped
    minitransformer train --out out --overwrite  # start over in a folder that holds a checkpoint (else refused)
    minitransformer train config/train_shakespeare_char.py --max_iters=2000 --compile=False   # nanoGPT's spelling
    minitransformer sample --out out --prompt "def " --max-new-tokens 500 --top-p 0.9
    minitransformer train --profile 5          # mt.profiler over 5 steps: the op table, trace.json in --out
    minitransformer explore --out out          # a page: tokens, next-token distribution, attention, logit lens

    minitransformer translate train --corpus numbers-fr     # or --data pairs.tsv (source<TAB>target)
    minitransformer translate eval --out out/translate --beam 4
    minitransformer translate --out out/translate "1 204 017"
    minitransformer classify train --task brackets           # or --data labelled.tsv (label<TAB>text)
    minitransformer classify --out out/classify "(([]){})"
    minitransformer vit train --dataset digits --plot-attention
    minitransformer vit eval --out out/vit
    minitransformer asr train                                # spoken digits, synthesised by eSpeak NG
    minitransformer asr transcribe --out out/asr speech.wav

    minitransformer embed --model DIR "a sentence" "another"   # sentence embeddings (--save vectors.npy)
    minitransformer search --model DIR --corpus lines.txt "query" --top-k 5
    minitransformer serve --out out --port 8000                # HTTP: OpenAI's /v1/completions, /v1/models

    minitransformer quantize --out out --bits 4 --group 64 --to out-q4   # or --bits 8; --embedding too
    minitransformer prune --out out --sparsity 0.5 --heads 2 --finetune-iters 200 --to out-pruned
    minitransformer eval --out out-q4                          # val loss, file size, memory
    minitransformer export --out out --onnx model.onnx         # ONNX graph (needs the onnx extra)

    minitransformer run -n 2 train.py --batch_size=8           # N ranks of a script, as torchrun (over MPI)

The options of train, sample and the tasks' commands also take nanoGPT's spelling (--max_iters=2000,
--learning_rate=1e-3, --bias=False) and come from config files: TOML with --config, or nanoGPT's
config/*.py given positionally (read as `name = value` lines, never run). Each command's --help lists its
options and their defaults. Bad values give one line starting with "error:", not a traceback.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

import minitransformer as mt

from . import distributed
from .io.checkpoint import CheckpointError
from .tasks.language_model import TrainConfig, export_hf, load_model, train
from .training.config import check_ranges
from .training.options import (
    NANOGPT_NOTE,
    HelpFormatter,
    add_config_options,
    config_values,
    kernels_notice,
    nanogpt_argv,
    wrap,
)

INF = float("inf")


def _train_parser(sub: Any, flags: dict[str, str]) -> None:
    p = sub.add_parser("train", help="train a GPT on a text file",
                       description=wrap("Train a GPT with nanoGPT's options, then print a sample. " + NANOGPT_NOTE))
    add_config_options(p, TrainConfig, flags, files=True)
    _add_quiet(p)


def _add_quiet(p: argparse.ArgumentParser, shown: bool = True) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar: `iter N` lines every --log-interval steps instead" if shown
                   else argparse.SUPPRESS)


def cmd_train(args: argparse.Namespace) -> None:
    values = config_values(args, TrainConfig)
    cfg = TrainConfig(**values)
    if not cfg.resume:
        cfg.validate()  # a bad option is the one line printed, before any notice
    kernels_notice(values, TrainConfig)
    result = train(cfg, overrides={k: v for k, v in values.items() if k != "resume"}, progress=not args.quiet)
    if not distributed.world().is_main or cfg.eval_only:
        return  # under MPI, rank 0 reports and samples; --eval-only printed its one evaluation
    print(f"done: step {result['step']}, val loss {result['val_loss']:.4f}; checkpoint in {result['out']}")
    if cfg.sample_tokens:
        print("sample:")
        # temperature 0.9: at 0.7 a small model's most likely character (a space) takes over the sample
        _stream(result["model"].eval(), result["tokenizer"], "\n", cfg.sample_tokens, 0.9, None, None)


@dataclasses.dataclass
class SampleOptions:
    """The options of `minitransformer sample`, with the names of nanoGPT's sample.py."""

    out: str = "out"
    prompt: str = "\n"
    max_new_tokens: int = 500
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_samples: int = 1
    device: str = "cpu"
    init_from: str = "resume"
    allow_nonfinite: bool = False

    # top_k: at least 1 or absent (None), the rule the server applies to a request's top_k
    RANGES = {"max_new_tokens": (0, INF, True), "temperature": (0, INF, False), "top_k": (1, INF, True),
              "top_p": (0, 1, False), "seed": (0, 2**128 - 1, True), "num_samples": (1, INF, True)}


SAMPLE_HELP = {
    "prompt": "the text the samples continue; FILE:path reads it from a file (default: a newline)",
    "max_new_tokens": "tokens to generate", "temperature": "below 1: more likely tokens; above 1: more varied",
    "top_k": "sample from the k most likely tokens only", "top_p": "sample from the smallest set of tokens "
    "whose probabilities reach p", "seed": "seed of the sampling (default: None, a different sample each time)",
    "num_samples": "samples generated together as one batch", "device": "cpu (sampling runs on the CPU)",
    "init_from": "resume, the checkpoint in --out (the only choice: OpenAI's GPT-2 weights are not read here)",
    "allow_nonfinite": "load weights that hold NaN or infinity (refused otherwise: docs/reliability.md)",
}


def _sample_parser(sub: Any, flags: dict[str, str]) -> None:
    s = sub.add_parser("sample", help="stream text from a trained checkpoint",
                       description=wrap("Stream text from the checkpoint in --out. " + NANOGPT_NOTE))
    add_config_options(s, SampleOptions, flags, SAMPLE_HELP, files=True)


def _stream(model: Any, tokenizer: Any, prompt: str, n: int, temperature: float, top_k: int | None,
            top_p: float | None) -> None:
    """Print the prompt, then each sampled token as soon as it exists."""

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
    o = SampleOptions(**config_values(args, SampleOptions))
    check_ranges(o, o.RANGES)
    if o.init_from != "resume":
        raise ValueError(f"--init-from {o.init_from}: sample reads the checkpoint in --out (init_from=resume); "
                         "OpenAI's GPT-2 weights are not read here")
    if o.device != "cpu":
        raise ValueError(f"--device {o.device}: sample runs on the CPU")
    prompt = o.prompt
    if prompt.startswith("FILE:"):  # nanoGPT's way to give a long prompt
        path = Path(prompt[len("FILE:"):])
        if not path.is_file():
            raise ValueError(f"--prompt {prompt}: no such file")
        prompt = path.read_text(encoding="utf-8")
    model, tokenizer, _ = load_model(o.out, allow_nonfinite=o.allow_nonfinite)
    if o.seed is not None:
        mt.manual_seed(o.seed)
    if o.num_samples == 1:
        _stream(model, tokenizer, prompt, o.max_new_tokens, o.temperature, o.top_k, o.top_p)
        return
    # several samples: one batch, each step one pass over the weights for all of them; printed at the end
    ids = tokenizer.encode(prompt) if prompt else [0]
    rows = model.generate_batch([ids] * o.num_samples, o.max_new_tokens, o.temperature, o.top_k, o.top_p)
    for i, row in enumerate(rows):
        print(("" if i == 0 else "---------------\n") + prompt + tokenizer.decode(row))


# ---- the applications: translate, classify, vit, asr ---------------------------------------------------------
TASK_HELP = {
    "translate": ("translate with an encoder-decoder Transformer",
                  "minitransformer translate train [options] | eval --out DIR [--beam N] | --out DIR TEXT..."),
    "classify": ("classify text with a Transformer encoder",
                 "minitransformer classify train [options] | eval --out DIR | --out DIR TEXT..."),
    "vit": ("classify images with a Vision Transformer",
            "minitransformer vit train [options] | eval --out DIR | predict --out DIR FILE.npy|FILE.png..."),
    "asr": ("transcribe spoken digits (Transformer + CTC, speech synthesised by eSpeak NG)",
            "minitransformer asr train [options] | eval --out DIR [--beam N] | transcribe --out DIR FILE.wav..."),
}
# each task's third command: its name, what it reads, what it does
PREDICT = {"translate": ("predict", "TEXT", "translate each TEXT"),
           "classify": ("predict", "TEXT", "classify each TEXT"),
           "vit": ("predict", "FILE", "classify each image (.npy; PNG with matplotlib) of the model's size"),
           "asr": ("transcribe", "FILE", "transcribe each WAV file (16-bit PCM, any sample rate)")}


def _task_module(name: str) -> Any:
    modules = {"translate": "translation", "classify": "classification", "vit": "vit", "asr": "speech"}
    return importlib.import_module(f"minitransformer.tasks.{modules[name]}")


def _task_parser(sub: Any, name: str, flags: dict[str, str]) -> set[str]:
    """`NAME train | eval | predict` (asr: transcribe), each with its own options and --help; returns the
    option strings that take a value."""
    module = _task_module(name)
    short, usage = TASK_HELP[name]
    predict, reads, does = PREDICT[name]
    p = sub.add_parser(name, help=short, usage=usage, description=module.__doc__, formatter_class=HelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar=f"{{train,eval,{predict}}}",
                               prog=f"minitransformer {name}", help=f"`minitransformer {name} ACTION --help` shows "
                               f"its options; without one, the inputs are given to {predict} (default: {predict})")
    t = actions.add_parser("train", help="train a model and evaluate it on held-out data",
                           description=wrap(f"{module.CONFIG.__doc__} {NANOGPT_NOTE}"),
                           formatter_class=HelpFormatter)
    add_config_options(t, module.CONFIG, flags, module.HELP, files=True)
    _add_quiet(t)
    shown = {"out", *module.EVAL_OPTIONS}
    e = actions.add_parser("eval", help="evaluate the checkpoint in --out on the held-out data",
                           description=wrap(f"Evaluate the checkpoint in --out on the held-out data. {NANOGPT_NOTE}"),
                           formatter_class=HelpFormatter)
    r = actions.add_parser(predict, aliases=["predict"] if predict != "predict" else [], help=does,
                           description=wrap(f"With the checkpoint in --out: {does}; one line each, the input, a "
                                             f"tab, the answer. `minitransformer {name} --out DIR {reads}...` is "
                                             "short for this."),
                           formatter_class=HelpFormatter)
    r.add_argument("words", nargs="*", metavar=reads, help=f"the inputs ({reads}...)")
    takes_value = set()
    for q in (e, r):  # the training options are accepted, for old command lines, and not listed
        takes_value |= add_config_options(q, module.CONFIG, flags, module.HELP, shown=shown)
        _add_quiet(q, shown=False)
    for q, listed in ((t, True), (e, False), (r, False)):
        if name == "vit":
            q.add_argument("--plot-attention", action="store_true", help="save attention.png: the class token's "
                           "attention over the patches of a few test images" if listed else argparse.SUPPRESS)
    return takes_value


def _task_argv(argv: list[str], takes_value: set[str]) -> list[str]:
    """`translate --out DIR TEXT...` (no train, eval or predict) is `translate predict --out DIR TEXT...`; a
    command word after the options (`translate --out DIR eval`) moves to the front, as the old form allowed."""
    if not argv or argv[0] not in TASK_HELP or argv[1:] in (["-h"], ["--help"]):
        return argv
    name, rest = argv[0], argv[1:]
    i = 0
    while i < len(rest) and rest[i].startswith("-") and len(rest[i]) > 1 and rest[i] != "--":
        i += 1 + (rest[i] in takes_value)  # an option's value follows it unless given as --option=value
    words = ("train", "eval", PREDICT[name][0], "predict")
    if i < len(rest) and rest[i] in words:
        return [name, rest[i], *rest[:i], *rest[i + 1:]]
    return [name, PREDICT[name][0], *rest]


def cmd_task(name: str, args: argparse.Namespace) -> None:
    module = _task_module(name)
    values = config_values(args, module.CONFIG)
    if args.action == "train":
        cfg = module.CONFIG(**values)
        if not cfg.resume:
            cfg.validate()  # a bad option is the one line printed, before any notice
        kernels_notice(values, module.CONFIG)
        extra = {"plot_attention": True} if getattr(args, "plot_attention", False) else {}
        result = module.train(cfg, overrides={k: v for k, v in values.items() if k != "resume"},
                              progress=not args.quiet, **extra)
        print(module.report(result))
        return
    out = values.get("out", module.CONFIG.out)
    if args.action == "eval":
        print(module.report(module.evaluate_checkpoint(out, **module.eval_options(values))))
        return
    words = list(args.words)
    if not words:
        raise ValueError(f"nothing to predict: give the inputs, or 'train' / 'eval' (see minitransformer {name} -h)")
    for text, answer in zip(words, module.predict(out, words, **module.eval_options(values)), strict=True):
        print(f"{text}\t{answer}")


def cmd_embed(args: argparse.Namespace) -> None:
    if not args.texts:
        raise ValueError("embed: give the sentences to embed")
    vectors = mt.SentenceEncoder.from_pretrained(args.model).encode(args.texts, batch_size=args.batch_size)
    if args.save:
        np.save(args.save, vectors)
        print(f"saved {vectors.shape[0]} vectors of {vectors.shape[1]} numbers to {args.save}")
        return
    for text, v in zip(args.texts, vectors, strict=True):
        print(f"{text}\t[{', '.join(f'{x:.4f}' for x in v[:8])}, ...] ({len(v)} numbers)")


def cmd_search(args: argparse.Namespace) -> None:
    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise ValueError(f"--corpus {corpus}: no such file")
    lines = [ln.strip() for ln in corpus.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"--corpus {corpus}: no non-empty lines")
    enc = mt.SentenceEncoder.from_pretrained(args.model)
    docs = enc.encode(lines, batch_size=args.batch_size)
    for query in args.queries:
        q = enc.encode(query)
        # cosine similarity; the encoder's vectors are already unit length when the model normalises
        sims = docs @ q / ((docs**2).sum(axis=1) ** 0.5 * (q @ q) ** 0.5 + 1e-12)
        print(f"query: {query}")
        for i in sims.argsort()[::-1][:args.top_k]:
            print(f"  {sims[i]:.4f}  {lines[i]}")


def cmd_serve(args: argparse.Namespace) -> None:
    from .deploy.serve import make_server  # loaded by its command only: the CLI starts fast

    check_ranges(args, {"port": (0, 65535, True), "max_new_tokens_limit": (1, INF, True),
                        "max_body_bytes": (1, INF, True), "max_batch_size": (1, INF, True),
                        "max_queue": (1, INF, True), "timeout": (0, INF, False), "max_connections": (1, INF, True)})
    try:
        server = make_server(args.out, args.host, args.port, args.max_new_tokens_limit, args.max_body_bytes,
                             max_batch_size=args.max_batch_size, max_queue=args.max_queue, model_name=args.model_name,
                             timeout=args.timeout, max_connections=args.max_connections)
    except OSError as e:
        if e.filename is not None:
            raise
        # the address: a port in use, a host name that does not resolve, an address not on this machine
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host, port = server.server_address[:2]
    print(f"serving {args.out} on http://{host}:{port} (OpenAI's POST /v1/completions and GET /v1/models; "
          "POST /v1/generate, GET /v1/model, GET /health); "
          "Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def cmd_explore(args: argparse.Namespace) -> None:
    from .explore.server import serve  # loaded by its command only: the CLI starts fast

    check_ranges(args, {"port": (0, 65535, True)})
    serve(args.out, args.host, args.port)


def cmd_quantize(args: argparse.Namespace) -> None:
    from .deploy.compress import (  # loaded by its command only: the CLI starts fast
        checkpoint_bytes,
        quantize_checkpoint,
    )

    desc = quantize_checkpoint(args.out, args.to, args.bits, args.group, args.embedding, overwrite=args.overwrite)
    what = "int8 per channel" if desc["bits"] == 8 else f"4-bit in groups of {desc['group']}"
    print(f"quantized {len(desc['linears'])} Linear layers ({what}"
          + (", embedding included" if desc["embeddings"] else "") + f") into {args.to}: "
          f"{checkpoint_bytes(args.to):,} bytes (float32: {checkpoint_bytes(args.out):,})")


def cmd_prune(args: argparse.Namespace) -> None:
    from .deploy.compress import prune_checkpoint  # loaded by its command only: the CLI starts fast

    desc = prune_checkpoint(args.out, args.to, args.sparsity, args.heads, args.finetune_iters, args.finetune_lr,
                            progress=not args.quiet, overwrite=args.overwrite)
    heads = sum(len(v) for v in desc["heads"].values())
    print(f"pruned into {args.to}: {desc['achieved_sparsity']:.1%} of the block weights are zero, "
          f"{heads} head(s) removed" + (f", fine-tuned {args.finetune_iters} steps" if args.finetune_iters else ""))


def cmd_eval(args: argparse.Namespace) -> None:
    from .deploy.compress import evaluate  # loaded by its command only: the CLI starts fast

    check_ranges(args, {"batch_size": (1, INF, True)})
    r = evaluate(args.out, args.batch_size, allow_nonfinite=args.allow_nonfinite)
    q = r["quantization"]
    kind = "float32" if not q else ("int8" if q["bits"] == 8 else f"4-bit (group {q['group']})")
    if r["pruning"]:
        kind += f", pruned to {r['pruning']['achieved_sparsity']:.1%} zeros"
    print(f"{args.out}: {kind}; val loss {r['val_loss']:.4f} (every window of the validation split); "
          f"weights file {r['file_bytes']:,} bytes, in memory {r['weight_bytes']:,} bytes")


def cmd_export(args: argparse.Namespace) -> None:
    if (args.onnx is None) == (args.hf is None):
        raise ValueError("export: give one of --onnx FILE (an ONNX graph) or --hf DIR (a Hugging Face GPT-2 directory)")
    if args.hf is not None:
        print(export_hf(args.out, args.hf))
        return
    from .deploy.onnx_export import export_checkpoint  # loaded by its command only: the CLI starts fast

    kind = export_checkpoint(args.out, args.onnx)
    print(f"wrote the {kind} of {args.out} to {args.onnx} (ONNX opset 17; batch and time axes are dynamic)")


def cmd_run(args: argparse.Namespace) -> int:
    from .training import launch  # loaded by its command only: the CLI starts fast

    if args.nnodes not in ("1", "1:1"):
        raise ValueError(f"--nnodes {args.nnodes}: run starts its processes on this machine; for several machines "
                         "start them with mpiexec and a host file (docs/distributed.md)")
    if not args.module and not Path(args.script).is_file():
        raise ValueError(f"{args.script}: no such file")
    argv = [sys.executable, *(["-m"] if args.module else []), args.script, *args.script_args]
    return launch.launch(args.nproc, argv, args.master_addr, args.master_port)


def cmd_port(args: argparse.Namespace) -> None:
    from .porting import rewrite_imports  # loaded by its command only: the CLI starts fast

    files: list[tuple[Path, Path]] = []  # (source, its path relative to the output folder)
    for name in args.paths:
        path = Path(name)
        if path.is_dir():
            files += [(f, path.name / f.relative_to(path)) for f in sorted(path.rglob("*.py"))]
        elif path.is_file():
            files.append((path, Path(path.name)))
        else:
            raise ValueError(f"{name}: no such file or folder")
    if not args.to and not args.in_place and (len(files) != 1 or Path(args.paths[0]).is_dir()):
        raise ValueError("port: give --to DIR (or --in-place) for several files or a folder; one file alone is "
                         "printed")
    for src, rel in files:
        try:
            text = rewrite_imports(src.read_text(encoding="utf-8"))
        except SyntaxError as e:
            raise ValueError(f"{src}:{e.lineno}: not valid Python ({e.msg})") from None
        if args.in_place:
            src.write_text(text, encoding="utf-8")
        elif args.to:
            dest = Path(args.to) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    if args.to or args.in_place:
        print(f"rewrote the torch imports of {len(files)} file(s) -> {args.to or 'in place'}", file=sys.stderr)


def _port_parser(sub: Any) -> None:
    p = sub.add_parser("port", help="point a PyTorch script's imports at minitransformer (nothing else changes)",
                       description="Rewrite `import torch`, `import torch.x as y` and `from torch.x import y` into "
                       "the same imports of minitransformer, under the same names; every other line stays as it "
                       "is (docs/pytorch.md). One file is printed; several files or a folder go to --to DIR.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="Python files or folders (their *.py files)")
    p.add_argument("--to", default=None, help="folder for the rewritten files (default: print one file)")
    p.add_argument("--in-place", action="store_true", help="overwrite the files instead (default: off)")


def _run_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="run a script as N processes of one data-parallel job (torchrun, over MPI)",
                       description="Start N processes of `python SCRIPT ARGS...` as ranks of one MPI job (mpiexec), "
                       "each with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set "
                       "before it starts, as torchrun sets them; OMP_NUM_THREADS=1 unless set. The exit status is "
                       "non-zero when a rank fails; Ctrl-C stops every rank. Needs mpi4py and mpich "
                       "(pip install 'minitransformer[mpi]').")
    r.add_argument("-n", "--nproc-per-node", "--nproc_per_node", dest="nproc", type=int, default=1, metavar="N",
                   help="number of processes (default: %(default)s)")
    r.add_argument("--standalone", action="store_true", help="accepted as torchrun's; a run is always on this machine")
    r.add_argument("--nnodes", default="1", help="machines: only 1 (default: %(default)s)")
    r.add_argument("--master-addr", "--master_addr", default="127.0.0.1",
                   help="MASTER_ADDR for the script; MPI does the rendezvous (default: %(default)s)")
    r.add_argument("--master-port", "--master_port", type=int, default=29500,
                   help="MASTER_PORT for the script (default: %(default)s)")
    r.add_argument("-m", "--module", action="store_true", help="SCRIPT is a module: python -m SCRIPT (default: off)")
    r.add_argument("script", metavar="SCRIPT", help="the Python script (or module with -m)")
    r.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")


def _stop_other_ranks(message: str) -> None:
    """Under MPI, a rank that fails takes the whole job down with a message instead of leaving the other
    ranks waiting in a collective forever (no-op in a single process)."""

    if distributed.launched_by_mpi():
        try:
            w = distributed.world()
        except RuntimeError:
            return
        if w.size > 1:
            w.abort(message)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, str], set[str]]:
    """The parser, the boolean flags of train, sample and the tasks (for `nanogpt_argv`), and the options of
    the tasks that take a value (for `_task_argv`)."""
    parser = argparse.ArgumentParser(prog="minitransformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    flags: dict[str, str] = {}
    takes_value: set[str] = set()
    _train_parser(sub, flags)
    _sample_parser(sub, flags)
    for name in TASK_HELP:
        takes_value |= _task_parser(sub, name, flags)
    e = sub.add_parser("embed", help="sentence embeddings from a sentence-transformers model directory")
    e.add_argument("texts", nargs="*", metavar="TEXT")
    e.add_argument("--model", required=True, help="model directory (modules.json, config.json, model.safetensors)")
    e.add_argument("--save", default=None, help="write the vectors to this .npy file instead of printing them")
    e.add_argument("--batch-size", type=int, default=32, help="sentences encoded together")
    q = sub.add_parser("search", help="the lines of a file closest in meaning to a query (cosine similarity)")
    q.add_argument("queries", nargs="+", metavar="QUERY")
    q.add_argument("--model", required=True, help="model directory (modules.json, config.json, model.safetensors)")
    q.add_argument("--corpus", required=True, help="UTF-8 text file, one document per line")
    q.add_argument("--top-k", type=int, default=5, help="lines printed per query")
    q.add_argument("--batch-size", type=int, default=32, help="lines encoded together")
    v = sub.add_parser("serve", help="serve a trained language model over HTTP")
    v.add_argument("--out", default="out", help="checkpoint directory")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on")
    v.add_argument("--port", type=int, default=8000, help="port to listen on")
    v.add_argument("--max-new-tokens-limit", type=int, default=1000, help="the most tokens one request may ask for")
    v.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413")
    v.add_argument("--max-batch-size", type=int, default=16, help="sequences decoded together at most")
    v.add_argument("--max-queue", type=int, default=64, help="sequences waiting at most; more get 503")
    v.add_argument("--model-name", default=None, help="the model id clients name (default: the folder's name)")
    v.add_argument("--timeout", type=float, default=30.0,
                   help="seconds a connection may take to send its request (and to read the answer)")
    v.add_argument("--max-connections", type=int, default=256, help="open connections at most; more get 503")
    z = sub.add_parser("quantize", help="write an int8 or 4-bit copy of a language-model checkpoint")
    z.add_argument("--out", default="out", help="the trained checkpoint directory")
    z.add_argument("--to", required=True, help="directory for the quantized checkpoint")
    z.add_argument("--bits", type=int, choices=(8, 4), default=8, help="bits per weight")
    z.add_argument("--group", type=int, default=64, help="4-bit: weights per scale (32 or 64)")
    z.add_argument("--embedding", action="store_true", help="also quantize the (tied) token embedding")
    z.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --to")
    r = sub.add_parser("prune", help="write a pruned copy of a language-model checkpoint")
    r.add_argument("--out", default="out", help="the trained checkpoint directory")
    r.add_argument("--to", required=True, help="directory for the pruned checkpoint")
    r.add_argument("--sparsity", type=float, default=0.0, help="fraction of block weights to zero, by magnitude")
    r.add_argument("--heads", type=int, default=0, help="number of attention heads to remove")
    r.add_argument("--finetune-iters", type=int, default=0, help="steps of training afterwards, zeros held")
    r.add_argument("--finetune-lr", type=float, default=None, help="(default: the run's --min-lr)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --to")
    a = sub.add_parser("eval", help="validation loss, file size and memory of a language-model checkpoint")
    a.add_argument("--out", default="out", help="checkpoint directory (float, quantized or pruned)")
    a.add_argument("--batch-size", type=int, default=64, help="validation windows per batch")
    a.add_argument("--allow-nonfinite", action="store_true",
                   help="load weights that hold NaN or infinity (refused otherwise: docs/reliability.md)")
    x = sub.add_parser("export", help="write a model as an ONNX graph or as a Hugging Face GPT-2 directory",
                       formatter_class=HelpFormatter)
    x.add_argument("--out", default="out", help="checkpoint directory")
    x.add_argument("--onnx", default=None, help="the .onnx file to write (language or translation model)")
    x.add_argument("--hf", default=None, metavar="DIR",
                   help="a Hugging Face GPT-2 directory to write (language model): config.json, model.safetensors, "
                   "tokenizer.json; transformers' from_pretrained loads it (docs/interop.md)")
    o = sub.add_parser("explore", help="a web page that shows what a trained model does inside")
    o.add_argument("--out", default="out", help="checkpoint directory: a language model or a translation model")
    o.add_argument("--host", default="127.0.0.1", help="address to listen on")
    o.add_argument("--port", type=int, default=8000, help="port to listen on")
    _run_parser(sub)
    _port_parser(sub)
    for p in sub.choices.values():  # every command's --help shows the defaults
        p.formatter_class = HelpFormatter
    return parser, flags, takes_value


def _parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line as `main` reads it: nanoGPT's booleans (--bias=False), the tasks' short form
    (`translate --out DIR TEXT`), and inputs or config files after the options."""
    parser, flags, takes_value = _parser()
    if argv and argv[0] in ("train", "sample", *TASK_HELP):
        try:
            argv = _task_argv(nanogpt_argv(argv, flags), takes_value)
        except ValueError as e:
            parser.error(str(e))
    # inputs may follow options (`vit predict --out DIR a.npy`, `train --max_iters=5 config.py`): argparse leaves
    # those over as extras
    args, extras = parser.parse_known_args(argv)
    if extras:
        room = "words" if hasattr(args, "words") else "config_files" if hasattr(args, "config_files") else None
        if room is None or any(e.startswith("-") for e in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        setattr(args, room, [*(getattr(args, room) or []), *extras])
    return args


def os_error_line(e: OSError) -> str:
    """One line for an OSError: the file (or both files of a rename) and the system's reason."""
    reason = e.strerror or str(e)
    if e.filename is None:
        return reason
    names = f"{e.filename}" + (f" -> {e.filename2}" if getattr(e, "filename2", None) else "")
    return f"{names}: {reason}"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    status = None  # a command may return an exit status (run: the job's)
    try:
        commands = {"train": cmd_train, "sample": cmd_sample, "embed": cmd_embed, "search": cmd_search,
                    "serve": cmd_serve, "quantize": cmd_quantize, "prune": cmd_prune, "eval": cmd_eval,
                    "export": cmd_export, "run": cmd_run, "port": cmd_port,
                    "explore": cmd_explore}
        if args.command in commands:
            status = commands[args.command](args)
        else:  # translate, classify, vit, asr
            cmd_task(args.command, args)
    except (ValueError, CheckpointError, RuntimeError) as e:
        _stop_other_ranks(str(e))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a file that cannot be read or written: its name and the system's reason
        message = os_error_line(e)
        _stop_other_ranks(message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as e:
        _stop_other_ranks(f"{type(e).__name__}: {e}")
        raise
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
