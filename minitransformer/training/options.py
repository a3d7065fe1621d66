"""The command line's options: one table of nanoGPT's option names and ours, the argparse options built from
the job configs' fields (every spelling: hyphens, underscores, `--key=value`), and the config files (TOML, and
nanoGPT-style `.py` files read with `ast`, never run). __main__.py builds its parsers from these. Options are
flat: the model config a job's config holds gives its options under their own names (--n-layer, `n_layer = 4`),
and the flat values build the nested config back (config.py).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import sys
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import backend, distributed
from ..io import checkpoint
from ..io.checkpoint import CheckpointError
from .config import LoopConfig, flat_defaults, flat_types

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
    "overwrite": "train from scratch even though --out holds a checkpoint (replaced at the first save); without it "
                 "such a run is refused",
    "skip_nonfinite": "skip (and count) a step whose loss or gradient is NaN or infinite, as GradScaler does; "
                      "without it training stops there, the last good checkpoint kept",
    "profile": "record this many steps (after 3 warm-up steps) with mt.profiler: print the op table and write "
               "trace.json into --out for Perfetto or chrome://tracing (0: off)",
}
CONFIG_HELP = ("TOML (or nanoGPT-style .py) file of options; the config files given positionally, then the command "
               "line, win over it")
FILES_HELP = ("nanoGPT-style config files (`name = value` lines, read, never run) or TOML files, applied in order "
              "after --config")
NANOGPT_NOTE = ("Every option also takes nanoGPT's spelling: --max_iters=2000, --learning_rate=1e-3, --bias=False "
                "(docs/interop.md).")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's help ends with its default, as argparse's
    ArgumentDefaultsHelpFormatter does, unless the help already names it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text or action.default in (None, argparse.SUPPRESS) or action.required
                or (not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        return f"{text} (default: %(default)s)".strip()


def wrap(text: str) -> str:
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


# nanoGPT's names for the loop's options; a job adds those for its own options (the language model: dataset)
NANOGPT: dict[str, Alias] = {
    "learning_rate": Alias("lr"),
    "out_dir": Alias("out"),
    "gradient_accumulation_steps": Alias("grad_accum"),
    "init_from": Alias("resume", _init_from, str, help="resume (as --resume) or scratch (default: scratch)"),
    "start": Alias("prompt"),
    "compile": Alias(None, _compile, bool, help="accepted: the hot ops are already compiled (Numba)"),
    "dtype": Alias(None, _dtype, str, help="float32; bfloat16 and float16 run in float32, as nanoGPT's on the CPU"),
    "wandb_log": Alias(None, _wandb, bool, LoopConfig, help="accepted; no Weights & Biases logging"),
    "wandb_project": Alias(None, kind=str, only=LoopConfig, help="accepted and unused"),
    "wandb_run_name": Alias(None, kind=str, only=LoopConfig, help="accepted and unused"),
}


def _fields(cls: type) -> dict[str, Any]:
    """The options of a config dataclass and their types, flat: its model config's options among them."""
    return {name: kind for name, kind in flat_types(cls).items() if name != "history"}


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


def add_config_options(p: argparse.ArgumentParser, cls: type, flags: dict[str, str],
                        helps: dict[str, str] | None = None, shown: set[str] | None = None,
                        files: bool = False) -> set[str]:
    """One option per field of the config dataclass `cls` (booleans as --x/--no-x), nanoGPT's names for them
    (NANOGPT), --config, and with `files` the config files given positionally. Every default is None, so that
    the options given explicitly can be told apart (they win over the config files and a resumed checkpoint);
    --help shows the real ones. Fields outside `shown` (None: all) are accepted but not listed in --help.
    Returns the option strings that take a value; `flags` collects the booleans (flag -> its --no- form)."""
    helps = {**HELP, **(helps or {})}
    defaults = flat_defaults(cls)
    takes_value = {"--config"}
    for name, kind in _fields(cls).items():
        text = helps.get(name, "")
        if "default" not in text:
            text = f"{text} (default: {defaults[name]})".strip()
        listed = shown is None or name in shown
        takes_value.update(_add_option(p, name, name, kind, text if listed else argparse.SUPPRESS, flags))
    group = p.add_argument_group("nanoGPT's names", wrap("the options above under nanoGPT's names (every option "
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


def nanogpt_argv(argv: list[str], flags: dict[str, str]) -> list[str]:
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


def python_items(path: Path) -> list[tuple[str, Any, str]]:
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
        import tomllib  # optional dependency
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


def read_config(path: Path, cls: type, flag: str = "") -> dict[str, Any]:
    """The options of `cls` in a config file: TOML (--config, or a .toml file) or a nanoGPT-style .py file.
    Keys are our names or nanoGPT's (NANOGPT), with hyphens or underscores; an unknown key is an error that
    lists the close matches."""
    where = f"{flag}{path}"
    if path.suffix not in (".py", ".toml") and not flag:
        raise ValueError(f"{path}: a config file is a nanoGPT-style .py file or a .toml file")
    if not path.is_file():
        raise ValueError(f"{where}: no such file")
    items = python_items(path) if path.suffix == ".py" else _toml_items(path, where)
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


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The options of `cls`: --config, then the config files given positionally, then the options given on
    the command line."""
    values = read_config(args.config, cls, "--config ") if args.config else {}
    for name in getattr(args, "config_files", None) or []:
        values.update(read_config(Path(name), cls))
    values.update({k: v for k, v in vars(args).items() if v is not None and k in _fields(cls)})
    return values


def kernels_notice(values: dict[str, Any], cls: type) -> None:
    """One line on stderr when the kernels will run in NumPy because Numba is missing (what the `auto`
    backend falls back to); the library itself says nothing."""

    setting = values.get("backend")
    if setting is None and values.get("resume"):
        try:
            setting = checkpoint.read_manifest(values.get("out", cls.out))["train_config"].get("backend")
        except (CheckpointError, KeyError):
            pass  # training says what is wrong with the checkpoint
    if (setting or "auto") == "auto" and "numba" not in backend.available() and distributed.world().is_main:
        _note("Numba is not installed, so the kernels run in NumPy, 1.4-1.8x slower: "
              "pip install 'minitransformer[numba]'")


# ---- train and sample --------------------------------------------------------------------------------------
