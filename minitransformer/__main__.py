"""Command line (also `python -m minitransformer ...`).

    minitransformer train                      # a small GPT on the built-in corpus, then a sample
    minitransformer train --data input.txt --tokenizer bpe --vocab-size 1024 --max-iters 5000
    minitransformer train --out out --resume   # continue exactly where the last checkpoint stopped
    minitransformer train config/train_shakespeare_char.py --max_iters=2000 --compile=False   # nanoGPT's spelling
    minitransformer sample --out out --prompt "def " --max-new-tokens 500 --top-p 0.9

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
    minitransformer serve --out out --port 8000                # HTTP: POST /v1/generate, GET /health

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
import ast
import codecs
import dataclasses
import difflib
import sys
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .loop import LoopConfig
from .train import TrainConfig

HELP = {
    "data": "UTF-8 text file to train on (default: the Python standard library's sources)",
    "tokenizer": "char or bpe", "vocab_size": "BPE vocabulary size", "out": "checkpoint directory",
    "resume": "continue from the checkpoint in --out", "backend": "auto, numpy or numba", "device": "cpu or cuda",
    "grad_clip": "0 disables clipping", "sample_tokens": "tokens to sample after training (0: none)",
    "max_iters": "optimizer steps in all", "lr": "peak learning rate",
    "min_lr": "learning rate at the end of the decay",
    "warmup_iters": "steps of linear warmup", "lr_decay_iters": "the cosine decay ends here (default: --max-iters)",
    "grad_accum": "micro-batches per optimizer step", "batch_size": "sequences per micro-batch",
    "eval_interval": "steps between evaluations", "eval_iters": "batches per split in an evaluation",
    "seed": "seed of the weights, batches and dropout", "bias": "biases in Linear and LayerNorm",
    "weight_decay": "AdamW's weight decay, on the 2-D weights only", "beta1": "AdamW's beta1",
    "beta2": "AdamW's beta2", "n_layer": "Transformer blocks", "n_head": "attention heads",
    "n_embd": "width of the residual stream", "block_size": "context length in tokens",
    "dropout": "dropout probability",
    "log_interval": "an `iter N: loss ...` line every this many steps where no progress bar shows them (0: none)",
    "eval_only": "evaluate once and exit (with --resume: the checkpoint's model)",
    "always_save_checkpoint": "save at every evaluation; --no-always-save-checkpoint: only when the val loss improves",
    "decay_lr": "warmup, then cosine decay to --min-lr; --no-decay-lr: a constant --lr",
}
CONFIG_HELP = ("TOML (or nanoGPT-style .py) file of options; the config files given positionally, then the command "
               "line, win over it")
FILES_HELP = ("nanoGPT-style config files (`name = value` lines, read, never run) or TOML files, applied in order "
              "after --config")
NANOGPT_NOTE = ("Every option also takes nanoGPT's spelling: --max_iters=2000, --learning_rate=1e-3, --bias=False "
                "(docs/interop.md).")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's help ends with its default, as argparse's
    ArgumentDefaultsHelpFormatter does, unless the help already names it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text or action.default in (None, argparse.SUPPRESS) or action.required
                or (not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        return f"{text} (default: %(default)s)".strip()


def _wrap(text: str) -> str:
    """A description for the raw-text help formatter: wrapped at 100 columns."""
    return textwrap.fill(text, 100)


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


# ---- nanoGPT's names -------------------------------------------------------------------------------------
# Every option of ours is also spelled with underscores (--max_iters), as nanoGPT spells it. The table below
# holds nanoGPT's names that differ from ours; argparse, --config and the .py config files all read it.
def _init_from(value: str) -> bool:
    if value not in ("scratch", "resume"):
        raise ValueError(f"init_from must be 'scratch' or 'resume', got {value!r} (OpenAI's GPT-2 weights are not "
                         "read here)")
    return value == "resume"


def _dataset(value: str) -> str:
    return str(Path("data") / value / "input.txt")


def _compile(value: bool) -> None:
    if value:
        _note("compile: nothing more to compile: the hot ops are Numba kernels, compiled once and cached on disk "
              "(what mt.compile does too)")


def _dtype(value: str) -> None:
    if value not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {value!r}")
    if value != "float32":
        _note(f"dtype {value}: runs in float32, as nanoGPT does on the CPU")


def _wandb(value: bool) -> None:
    if value:
        _note("wandb_log: no Weights & Biases logging here; the losses are in OUT/history.json")


@dataclasses.dataclass(frozen=True)
class Alias:
    """One of nanoGPT's names that is not ours: the option it sets (None: accepted, nothing set), how its value
    becomes ours, the type it is given as when not our option's type, and the configs it is for."""

    ours: str | None
    convert: Callable[[Any], Any] | None = None
    kind: type | None = None
    only: type | None = None  # the configs it is for: this class and its subclasses (None: all)
    help: str = ""


NANOGPT: dict[str, Alias] = {
    "learning_rate": Alias("lr"),
    "out_dir": Alias("out"),
    "gradient_accumulation_steps": Alias("grad_accum"),
    "init_from": Alias("resume", _init_from, str, help="resume (as --resume) or scratch (default: scratch)"),
    "dataset": Alias("data", _dataset, str, TrainConfig,
                     help="train on data/DATASET/input.txt, the text nanoGPT's prepare.py downloads"),
    "start": Alias("prompt"),
    "compile": Alias(None, _compile, bool, help="accepted: the hot ops are already compiled (Numba)"),
    "dtype": Alias(None, _dtype, str, help="float32; bfloat16 and float16 run in float32, as nanoGPT's on the CPU"),
    "wandb_log": Alias(None, _wandb, bool, LoopConfig, help="accepted; no Weights & Biases logging"),
    "wandb_project": Alias(None, kind=str, only=LoopConfig, help="accepted and unused"),
    "wandb_run_name": Alias(None, kind=str, only=LoopConfig, help="accepted and unused"),
}


def _fields(cls: type) -> dict[str, Any]:
    """The options of a config dataclass and their types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "history"}


def _aliases(cls: type) -> dict[str, Alias]:
    """The names of NANOGPT that `cls` takes: those for an option it has, and those accepted and unused."""
    fields = _fields(cls)
    return {name: a for name, a in NANOGPT.items() if name not in fields and (a.ours is None or a.ours in fields)
            and (a.only is None or issubclass(cls, a.only))}


# ---- options on the command line ---------------------------------------------------------------------------
BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class _Flag(argparse.Action):
    """A boolean option: --x sets True, --no-x False (main turns nanoGPT's --x=True / --x=False into these)."""

    def __init__(self, option_strings: list[str], dest: str, convert: Callable[[bool], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)
        self.convert = convert

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        value = not (option_string or "").startswith(("--no-", "--no_"))
        setattr(namespace, self.dest, self.convert(value) if self.convert else value)


def _converting(kind: type, convert: Callable[[Any], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(kind(text))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _add_option(p: Any, name: str, dest: str, kind: Any, text: str, flags: dict[str, str],
                convert: Callable[[Any], Any] | None = None, nanogpt_first: bool = False) -> list[str]:
    """--name as --hyphen-spelling and --underscore_spelling (the second one out of --help); booleans also as
    --no-name. Returns the option strings that take a value."""
    spellings = list(dict.fromkeys(["--" + name.replace("_", "-"), "--" + name]))
    if nanogpt_first:
        spellings.reverse()
    shown = [text] + [argparse.SUPPRESS] * (len(spellings) - 1)
    if kind is bool:
        negatives = ["--no-" + name.replace("_", "-"), "--no_" + name]
        if nanogpt_first and len(spellings) == 2:
            negatives.reverse()
        flags.update(zip(spellings, negatives, strict=False))  # one positive spelling (--bias): the first negative
        p.add_argument(spellings[0], negatives[0], dest=dest, action=_Flag, convert=convert, default=None, help=text)
        p.add_argument(*spellings[1:], negatives[1], dest=dest, action=_Flag, convert=convert, default=None,
                       help=argparse.SUPPRESS)
        return []
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
    parse = base if convert is None else _converting(base, convert)
    for flag, help_ in zip(spellings, shown, strict=True):
        p.add_argument(flag, dest=dest, type=parse, default=None, metavar=name.upper(), help=help_)
    return spellings


def _add_config_options(p: argparse.ArgumentParser, cls: type, flags: dict[str, str],
                        helps: dict[str, str] | None = None, shown: set[str] | None = None,
                        files: bool = False) -> set[str]:
    """One option per field of the config dataclass `cls` (booleans as --x/--no-x), nanoGPT's names for them
    (NANOGPT), --config, and with `files` the config files given positionally. Every default is None, so that
    the options given explicitly can be told apart (they win over the config files and a resumed checkpoint);
    --help shows the real ones. Fields outside `shown` (None: all) are accepted but not listed in --help.
    Returns the option strings that take a value; `flags` collects the booleans (flag -> its --no- form)."""
    helps = {**HELP, **(helps or {})}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    takes_value = {"--config"}
    for name, kind in _fields(cls).items():
        text = helps.get(name, "")
        if "default" not in text:
            text = f"{text} (default: {defaults[name]})".strip()
        listed = shown is None or name in shown
        takes_value.update(_add_option(p, name, name, kind, text if listed else argparse.SUPPRESS, flags))
    group = p.add_argument_group("nanoGPT's names", _wrap("the options above under nanoGPT's names (every option "
                                 "also takes its underscore spelling and the --name=value form)"))
    for name, a in _aliases(cls).items():
        listed = shown is None if a.ours is None else shown is None or a.ours in shown
        text = a.help or f"same as --{a.ours.replace('_', '-')}"  # type: ignore[union-attr]
        kind = a.kind or _fields(cls)[a.ours]  # type: ignore[index]
        takes_value.update(_add_option(group, name, a.ours or f"nanogpt_{name}", kind,
                                       text if listed else argparse.SUPPRESS, flags, a.convert, nanogpt_first=True))
    p.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
    if files:
        p.add_argument("config_files", nargs="*", metavar="CONFIG.py", help=FILES_HELP)
    return takes_value


def _nanogpt_argv(argv: list[str], flags: dict[str, str]) -> list[str]:
    """nanoGPT's booleans, --flag=True and --flag=False, as --flag and --no-flag."""
    out = []
    for i, a in enumerate(argv):
        if a == "--":
            return out + argv[i:]
        name, eq, value = a.partition("=")
        if eq and name in flags:
            if value.lower() not in BOOL_WORDS:
                raise ValueError(f"argument {name}: expected True or False, got {value!r}")
            a = name if BOOL_WORDS[value.lower()] else flags[name]
        out.append(a)
    return out


# ---- config files: TOML, and nanoGPT's Python files read without running them ----------------------------------
def _literal(node: ast.expr) -> Any:
    """The value of a literal: a number, string, True, False, None, or a tuple of them (else ValueError)."""
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (bool, int, float, str)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    raise ValueError(type(node).__name__)


def _python_items(path: Path) -> list[tuple[str, Any, str]]:
    """(name, value, where) for each line of a nanoGPT-style config file (config/train_shakespeare_char.py).
    The file is parsed with `ast`, never run: only `name = literal` statements (and a docstring) are allowed;
    an import, a call, arithmetic or a name is refused with its line."""
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, str(path))
    except SyntaxError as e:
        raise ValueError(f"{path}, line {e.lineno}: not valid Python ({e.msg})") from None
    lines = source.splitlines()
    items = []
    for node in tree.body:
        where = f"{path}, line {node.lineno}"
        code = lines[node.lineno - 1].strip()
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{where}: {code!r}: a config file holds only `name = value` lines (it is read, "
                             "never run)")
        try:
            value = _literal(node.value)
        except ValueError:
            raise ValueError(f"{where}: {code!r}: the value must be a literal: a number, a string, True, False, "
                             "None or a tuple of them (the file is read, never run)") from None
        items.append((node.targets[0].id, value, where))
    return items


def _toml_items(path: Path, where: str) -> list[tuple[str, Any, str]]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ValueError("reading TOML needs Python 3.11+ (tomllib) or `pip install tomli`") from None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{where}: {e}") from None
    return [(k.replace("-", "_"), v, where) for k, v in raw.items()]


TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "True or False", type(None): "None"}


def _typed(value: Any, kind: Any, what: str) -> Any:
    """`value` if it is of the type `kind` (an int is a float too; a bool is no int), else ValueError."""
    allowed = typing.get_args(kind) or (kind,)
    for t in allowed:
        if t is type(None) and value is None:
            return None
        if t is bool and isinstance(value, bool):
            return value
        if t in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if t is float or isinstance(value, int):
                return t(value)
        if t is str and isinstance(value, str):
            return value
    raise ValueError(f"{what} must be {' or '.join(TYPE_NAMES.get(t, str(t)) for t in allowed)}, got {value!r}")


def _read_config(path: Path, cls: type, flag: str = "") -> dict[str, Any]:
    """The options of `cls` in a config file: TOML (--config, or a .toml file) or a nanoGPT-style .py file.
    Keys are our names or nanoGPT's (NANOGPT), with hyphens or underscores; an unknown key is an error that
    lists the close matches."""
    where = f"{flag}{path}"
    if path.suffix not in (".py", ".toml") and not flag:
        raise ValueError(f"{path}: a config file is a nanoGPT-style .py file or a .toml file")
    if not path.is_file():
        raise ValueError(f"{where}: no such file")
    items = _python_items(path) if path.suffix == ".py" else _toml_items(path, where)
    fields, aliases = _fields(cls), _aliases(cls)
    known = [*fields, *aliases]
    unknown = [(name, at) for name, _, at in items if name not in known]
    if unknown:
        close = dict.fromkeys(m for name, _ in unknown for m in difflib.get_close_matches(name, known, n=3))
        at = unknown[0][1] if path.suffix == ".py" else where
        names = [unknown[0][0]] if path.suffix == ".py" else [name for name, _ in unknown]
        raise ValueError(f"{at}: unknown option(s) {', '.join(names)}"
                         + (f"; close matches: {', '.join(close)}" if close else ""))
    values: dict[str, Any] = {}
    for name, value, at in items:
        a = aliases.get(name)
        kind = fields[name] if a is None else a.kind or fields[a.ours]  # type: ignore[index]
        try:
            value = _typed(value, kind, name)
            if a is not None and a.convert is not None:
                value = a.convert(value)
        except ValueError as e:
            raise ValueError(f"{at}: {e}") from None
        if a is None or a.ours is not None:
            values[name if a is None else a.ours] = value  # type: ignore[index]
    return values


def _config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The options of `cls`: --config, then the config files given positionally, then the options given on
    the command line."""
    values = _read_config(args.config, cls, "--config ") if args.config else {}
    for name in getattr(args, "config_files", None) or []:
        values.update(_read_config(Path(name), cls))
    values.update({k: v for k, v in vars(args).items() if v is not None and k in _fields(cls)})
    return values


def _kernels_notice(values: dict[str, Any], cls: type) -> None:
    """One line on stderr when the kernels will run in NumPy because Numba is missing (what the `auto`
    backend falls back to); the library itself says nothing."""
    from . import backend, checkpoint, distributed

    setting = values.get("backend")
    if setting is None and values.get("resume"):
        try:
            setting = checkpoint.read_manifest(values.get("out", cls.out))["train_config"].get("backend")
        except (CheckpointError, KeyError):
            pass  # training says what is wrong with the checkpoint
    if (setting or "auto") == "auto" and "numba" not in backend.available() and distributed.world().is_main:
        _note("Numba is not installed, so the kernels run in NumPy, about 3x slower: "
              "pip install 'minitransformer[numba]'")


# ---- train and sample --------------------------------------------------------------------------------------
def _train_parser(sub: Any, flags: dict[str, str]) -> None:
    p = sub.add_parser("train", help="train a GPT on a text file",
                       description=_wrap("Train a GPT with nanoGPT's options, then print a sample. " + NANOGPT_NOTE))
    _add_config_options(p, TrainConfig, flags, files=True)
    _add_quiet(p)


def _add_quiet(p: argparse.ArgumentParser, shown: bool = True) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar: `iter N` lines every --log-interval steps instead" if shown
                   else argparse.SUPPRESS)


def cmd_train(args: argparse.Namespace) -> None:
    from . import distributed
    from .train import train

    values = _config_values(args, TrainConfig)
    cfg = TrainConfig(**values)
    if not cfg.resume:
        cfg.validate()  # a bad option is the one line printed, before any notice
    _kernels_notice(values, TrainConfig)
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


SAMPLE_HELP = {
    "prompt": "the text the samples continue; FILE:path reads it from a file (default: a newline)",
    "max_new_tokens": "tokens to generate", "temperature": "below 1: more likely tokens; above 1: more varied",
    "top_k": "sample from the k most likely tokens only", "top_p": "sample from the smallest set of tokens "
    "whose probabilities reach p", "seed": "seed of the sampling (default: None, a different sample each time)",
    "num_samples": "samples generated together as one batch", "device": "cpu (sampling runs on the CPU)",
    "init_from": "resume, the checkpoint in --out (the only choice: OpenAI's GPT-2 weights are not read here)",
}


def _sample_parser(sub: Any, flags: dict[str, str]) -> None:
    s = sub.add_parser("sample", help="stream text from a trained checkpoint",
                       description=_wrap("Stream text from the checkpoint in --out. " + NANOGPT_NOTE))
    _add_config_options(s, SampleOptions, flags, SAMPLE_HELP, files=True)


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

    o = SampleOptions(**_config_values(args, SampleOptions))
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
    model, tokenizer, _ = load_model(o.out)
    if o.seed is not None:
        mt.manual_seed(o.seed)
    if o.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {o.num_samples}")
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
    import importlib

    modules = {"translate": "translation", "classify": "classification", "vit": "vit", "asr": "speech"}
    return importlib.import_module(f"minitransformer.tasks.{modules[name]}")


def _task_parser(sub: Any, name: str, flags: dict[str, str]) -> set[str]:
    """`NAME train | eval | predict` (asr: transcribe), each with its own options and --help; returns the
    option strings that take a value."""
    module = _task_module(name)
    short, usage = TASK_HELP[name]
    predict, reads, does = PREDICT[name]
    p = sub.add_parser(name, help=short, usage=usage, description=module.__doc__, formatter_class=_HelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar=f"{{train,eval,{predict}}}",
                               prog=f"minitransformer {name}", help=f"`minitransformer {name} ACTION --help` shows "
                               f"its options; without one, the inputs are given to {predict} (default: {predict})")
    t = actions.add_parser("train", help="train a model and evaluate it on held-out data",
                           description=_wrap(f"{module.CONFIG.__doc__} {NANOGPT_NOTE}"),
                           formatter_class=_HelpFormatter)
    _add_config_options(t, module.CONFIG, flags, module.HELP, files=True)
    _add_quiet(t)
    shown = {"out", *module.EVAL_OPTIONS}
    e = actions.add_parser("eval", help="evaluate the checkpoint in --out on the held-out data",
                           description=_wrap(f"Evaluate the checkpoint in --out on the held-out data. {NANOGPT_NOTE}"),
                           formatter_class=_HelpFormatter)
    r = actions.add_parser(predict, aliases=["predict"] if predict != "predict" else [], help=does,
                           description=_wrap(f"With the checkpoint in --out: {does}; one line each, the input, a "
                                             f"tab, the answer. `minitransformer {name} --out DIR {reads}...` is "
                                             "short for this."),
                           formatter_class=_HelpFormatter)
    r.add_argument("words", nargs="*", metavar=reads, help=f"the inputs ({reads}...)")
    takes_value = set()
    for q in (e, r):  # the training options are accepted, for old command lines, and not listed
        takes_value |= _add_config_options(q, module.CONFIG, flags, module.HELP, shown=shown)
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
    values = _config_values(args, module.CONFIG)
    if args.action == "train":
        cfg = module.CONFIG(**values)
        if not cfg.resume:
            cfg.validate()  # a bad option is the one line printed, before any notice
        _kernels_notice(values, module.CONFIG)
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
    import numpy as np

    import minitransformer as mt

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
    import minitransformer as mt

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
    from .serve import make_server

    server = make_server(args.out, args.host, args.port, args.max_new_tokens_limit, args.max_body_bytes)
    host, port = server.server_address[:2]
    print(f"serving {args.out} on http://{host}:{port} (POST /v1/generate, GET /v1/model, GET /health); "
          "Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def cmd_quantize(args: argparse.Namespace) -> None:
    from .compress import checkpoint_bytes, quantize_checkpoint

    desc = quantize_checkpoint(args.out, args.to, args.bits, args.group, args.embedding)
    what = "int8 per channel" if desc["bits"] == 8 else f"4-bit in groups of {desc['group']}"
    print(f"quantized {len(desc['linears'])} Linear layers ({what}"
          + (", embedding included" if desc["embeddings"] else "") + f") into {args.to}: "
          f"{checkpoint_bytes(args.to):,} bytes (float32: {checkpoint_bytes(args.out):,})")


def cmd_prune(args: argparse.Namespace) -> None:
    from .compress import prune_checkpoint

    desc = prune_checkpoint(args.out, args.to, args.sparsity, args.heads, args.finetune_iters, args.finetune_lr,
                            progress=not args.quiet)
    heads = sum(len(v) for v in desc["heads"].values())
    print(f"pruned into {args.to}: {desc['achieved_sparsity']:.1%} of the block weights are zero, "
          f"{heads} head(s) removed" + (f", fine-tuned {args.finetune_iters} steps" if args.finetune_iters else ""))


def cmd_eval(args: argparse.Namespace) -> None:
    from .compress import evaluate

    r = evaluate(args.out, args.batch_size)
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
        from .hf import export_checkpoint as export_hf

        print(export_hf(args.out, args.hf))
        return
    from .onnx_export import export_checkpoint

    kind = export_checkpoint(args.out, args.onnx)
    print(f"wrote the {kind} of {args.out} to {args.onnx} (ONNX opset 17; batch and time axes are dynamic)")


def cmd_run(args: argparse.Namespace) -> int:
    from . import distributed

    if args.nnodes not in ("1", "1:1"):
        raise ValueError(f"--nnodes {args.nnodes}: run starts its processes on this machine; for several machines "
                         "start them with mpiexec and a host file (docs/distributed.md)")
    if not args.module and not Path(args.script).is_file():
        raise ValueError(f"{args.script}: no such file")
    argv = [sys.executable, *(["-m"] if args.module else []), args.script, *args.script_args]
    return distributed.launch(args.nproc, argv, args.master_addr, args.master_port)


def cmd_port(args: argparse.Namespace) -> None:
    from .porting import rewrite_imports

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
    from . import distributed

    if distributed.launched_by_mpi():
        try:
            w = distributed.world()
        except RuntimeError:
            return
        if w.size > 1:
            w.abort(message)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, str], set[str]]:
    """The parser, the boolean flags of train, sample and the tasks (for `_nanogpt_argv`), and the options of
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
    z = sub.add_parser("quantize", help="write an int8 or 4-bit copy of a language-model checkpoint")
    z.add_argument("--out", default="out", help="the trained checkpoint directory")
    z.add_argument("--to", required=True, help="directory for the quantized checkpoint")
    z.add_argument("--bits", type=int, choices=(8, 4), default=8, help="bits per weight")
    z.add_argument("--group", type=int, default=64, help="4-bit: weights per scale (32 or 64)")
    z.add_argument("--embedding", action="store_true", help="also quantize the (tied) token embedding")
    r = sub.add_parser("prune", help="write a pruned copy of a language-model checkpoint")
    r.add_argument("--out", default="out", help="the trained checkpoint directory")
    r.add_argument("--to", required=True, help="directory for the pruned checkpoint")
    r.add_argument("--sparsity", type=float, default=0.0, help="fraction of block weights to zero, by magnitude")
    r.add_argument("--heads", type=int, default=0, help="number of attention heads to remove")
    r.add_argument("--finetune-iters", type=int, default=0, help="steps of training afterwards, zeros held")
    r.add_argument("--finetune-lr", type=float, default=None, help="(default: the run's --min-lr)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    a = sub.add_parser("eval", help="validation loss, file size and memory of a language-model checkpoint")
    a.add_argument("--out", default="out", help="checkpoint directory (float, quantized or pruned)")
    a.add_argument("--batch-size", type=int, default=64, help="validation windows per batch")
    x = sub.add_parser("export", help="write a model as an ONNX graph or as a Hugging Face GPT-2 directory",
                       formatter_class=_HelpFormatter)
    x.add_argument("--out", default="out", help="checkpoint directory")
    x.add_argument("--onnx", default=None, help="the .onnx file to write (language or translation model)")
    x.add_argument("--hf", default=None, metavar="DIR",
                   help="a Hugging Face GPT-2 directory to write (language model): config.json, model.safetensors, "
                   "tokenizer.json; transformers' from_pretrained loads it (docs/interop.md)")
    _run_parser(sub)
    _port_parser(sub)
    for p in sub.choices.values():  # every command's --help shows the defaults
        p.formatter_class = _HelpFormatter
    return parser, flags, takes_value


def _parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line as `main` reads it: nanoGPT's booleans (--bias=False), the tasks' short form
    (`translate --out DIR TEXT`), and inputs or config files after the options."""
    parser, flags, takes_value = _parser()
    if argv and argv[0] in ("train", "sample", *TASK_HELP):
        try:
            argv = _task_argv(_nanogpt_argv(argv, flags), takes_value)
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


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    status = None  # a command may return an exit status (run: the job's)
    try:
        commands = {"train": cmd_train, "sample": cmd_sample, "embed": cmd_embed, "search": cmd_search,
                    "serve": cmd_serve, "quantize": cmd_quantize, "prune": cmd_prune, "eval": cmd_eval,
                    "export": cmd_export, "run": cmd_run, "port": cmd_port}
        if args.command in commands:
            status = commands[args.command](args)
        else:  # translate, classify, vit, asr
            cmd_task(args.command, args)
    except (ValueError, FileNotFoundError, CheckpointError, RuntimeError) as e:
        _stop_other_ranks(str(e))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        _stop_other_ranks(f"{type(e).__name__}: {e}")
        raise
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
