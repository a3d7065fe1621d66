"""What a job's config is made of: LoopConfig (the loop's options, with nanoGPT's names), which each job's config
extends with its own options and one field holding its model's config; the range checks every numeric option goes
through; and the flat view of a config that the command line, config files and checkpoints use.

The model config is one field (`model: GPTConfig`, declared with `model_field`), so the model is built from it as
it is, never joined from same-named fields. The model fields the user chooses (n_layer, d_model, dropout, ...) are
still flat options of the job: `--n-layer`, `n_layer = 4` in a config file, `n_layer` in a checkpoint's
train_config, and `TrainConfig(n_layer=4)` in Python. `flat_defaults` and `flat_types` list a config class's
options in that flat form, `flatten` turns a config into its flat dict, and a class made with `job_config` takes
flat keywords and sets the model's in its model config. The model's other fields are the data's (vocabulary
sizes, max_len, image size, classes: each job fills them in with dataclasses.replace when the data is known) or
keep their defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from ..io import checkpoint_schema
from ..io.checkpoint_schema import MAX_SIZE
from ..xp import cupy_module

MODEL_OPTIONS = "model_options"  # the metadata key of a model field: the model fields that are options


def model_field(default: Any, options: tuple[str, ...]) -> Any:
    """A job config's field holding its model config: `default` (a model config dataclass, copied for each job
    config) and `options`, the fields of the model the user sets, each also a flat option of the job. A name in
    `options` that the model config does not have is a TypeError here, when the job's class is defined."""
    known = {f.name for f in dataclasses.fields(default)}
    unknown = [name for name in options if name not in known]
    if unknown:
        raise TypeError(f"{type(default).__name__} has no field {', '.join(unknown)}")
    return field(default_factory=lambda: dataclasses.replace(default), metadata={MODEL_OPTIONS: tuple(options)})


def _model_field(cls: type) -> dataclasses.Field | None:
    return next((f for f in dataclasses.fields(cls) if MODEL_OPTIONS in f.metadata), None)


def job_config(cls: type) -> type:
    """@dataclass for a job's config whose model config is a `model_field`. Checks, when the class is defined,
    that none of the model's options has the name of one of the job's fields (the flat options would clash),
    and lets the class take the model's options as flat keywords, which set them in its model config (in the
    `model` given, else in the default): TrainConfig(n_layer=2), dataclasses.replace(cfg, n_layer=2)."""
    cls = dataclass(cls)
    models = [f for f in dataclasses.fields(cls) if MODEL_OPTIONS in f.metadata]
    if len(models) > 1:
        raise TypeError(f"{cls.__name__}: one model field, not {len(models)} ({', '.join(f.name for f in models)})")
    own = {f.name for f in dataclasses.fields(cls)}
    clash = [name for f in models for name in f.metadata[MODEL_OPTIONS] if name in own]
    if clash:
        raise TypeError(f"{cls.__name__}: the model option(s) {', '.join(clash)} of {cls.__name__}.{models[0].name} "
                        f"have the name of a field of {cls.__name__}; each flat option needs its own name")
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **nest(cls, kwargs))

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def nest(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Flat keywords -> the keywords of the dataclass `cls`: the model's options set in its model field (the
    model config given in `values`, else the default one); anything else is left as it is."""
    f = _model_field(cls)
    picked = {} if f is None else {k: values[k] for k in f.metadata[MODEL_OPTIONS] if k in values}
    if not picked:
        return values
    rest = {k: v for k, v in values.items() if k not in picked}
    model = rest.get(f.name)
    rest[f.name] = dataclasses.replace(model if model is not None else f.default_factory(), **picked)
    return rest


def flat_defaults(cls: type) -> dict[str, Any]:
    """The options of the config dataclass `cls` and their defaults, in order: its fields, and in the place of
    its model field, the model's options (with the default model config's values)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if MODEL_OPTIONS in f.metadata:
            out.update({name: getattr(default, name) for name in f.metadata[MODEL_OPTIONS]})
        else:
            out[f.name] = default
    return out


def flat_types(cls: type) -> dict[str, Any]:
    """The options of the config dataclass `cls` and their types, in the order of `flat_defaults`."""
    hints = typing.get_type_hints(cls)
    f = _model_field(cls)
    if f is not None:
        model_hints = typing.get_type_hints(type(f.default_factory()))  # type: ignore[misc]
        hints.update({name: model_hints[name] for name in f.metadata[MODEL_OPTIONS]})
    return {name: hints[name] for name in flat_defaults(cls)}


def flatten(cfg: Any) -> dict[str, Any]:
    """A config as the flat dict of its options (dataclasses.asdict, with the model field's options in its
    place): what a checkpoint's train_config holds, and what the class takes back as keywords."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if MODEL_OPTIONS in f.metadata:
            out.update({name: getattr(value, name) for name in f.metadata[MODEL_OPTIONS]})
        else:
            out[f.name] = copy.deepcopy(value)
    return out


@dataclass
class LoopConfig:
    """The options of the loop itself, with nanoGPT's names; each job's config extends this one."""

    max_iters: int = 1500
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None = max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0            # 0 disables clipping
    grad_accum: int = 1
    batch_size: int = 12
    eval_interval: int = 250
    eval_iters: int = 20
    out: str = "out"
    resume: bool = False
    seed: int = 1337
    backend: str = "auto"
    device: str = "cpu"
    log_interval: int = 10            # an `iter N: loss ...` line every this many steps; 0: none
    eval_only: bool = False           # evaluate once (at the checkpoint's step with --resume) and exit
    always_save_checkpoint: bool = True  # False: save only when the val loss is the best so far
    decay_lr: bool = True             # False: a constant --lr, no warmup and no decay
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    overwrite: bool = False           # train from scratch into an --out that already holds a checkpoint
    skip_nonfinite: bool = False      # skip (and count) steps whose loss or gradient is NaN or infinite
    profile: int = 0                  # profile this many steps after PROFILE_WARMUP steps (trace.json in --out)

    # the allowed range of each numeric option: (low, high, whether low itself is allowed); high is inclusive.
    # POSITIVE names the sizes and counts (1 .. MAX_SIZE, what a checkpoint may hold); every other float must
    # at least be finite. Each job adds its own options and its model's (flat names: n_layer, dropout, ...).
    POSITIVE = ("batch_size", "grad_accum", "eval_interval", "eval_iters")
    RANGES = {
        "max_iters": (0, math.inf, True), "lr": (0, math.inf, False), "min_lr": (0, math.inf, True),
        "warmup_iters": (0, math.inf, True), "lr_decay_iters": (0, math.inf, True),
        "weight_decay": (0, math.inf, True), "beta1": (0, 1, True), "beta2": (0, 1, True),
        "grad_clip": (0, math.inf, True), "log_interval": (0, math.inf, True), "seed": (0, 2**128 - 1, True),
        "profile": (0, math.inf, True),
    }
    BELOW_ONE = ("beta1", "beta2")  # [0, 1): 1 itself is not allowed

    def ranges(self) -> dict[str, tuple[float, float, bool]]:
        """Every numeric option of this config and its allowed range."""
        return {**{name: (1, MAX_SIZE, True) for name in self.POSITIVE}, **self.RANGES}

    def validate(self) -> None:
        """Raise ValueError with one clear line for a bad value: first the range of every numeric option
        (NaN and infinity included; the job's and its model's too, from the job's tables), then the rules that
        tie the loop's options together, then what training would need in memory. A job adds its own rules."""
        check_ranges(self, self.ranges(), self.BELOW_ONE)
        if self.min_lr > self.lr:
            raise ValueError(f"need --min-lr <= --lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.lr_decay_iters is not None and self.lr_decay_iters < self.warmup_iters:
            raise ValueError("--lr-decay-iters must be at least --warmup-iters")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"--device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device.startswith("cuda"):
            try:
                cupy_module()
            except RuntimeError as e:
                raise ValueError(f"--device {self.device}: {e}") from None
        if self.backend not in ("auto", "numpy", "numba"):
            raise ValueError(f"--backend must be auto, numpy or numba, got {self.backend!r}")
        check_memory(self)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_heads(model: Any, width: str, heads: str) -> None:
    """ValueError unless the model config's `width` divides into its `heads` (named as the options are)."""
    w, h = getattr(model, width), getattr(model, heads)
    if w % h:
        raise ValueError(f"{_option(width)} ({w}) must be divisible by {_option(heads)} ({h})")


def check_ranges(cfg: Any, ranges: dict[str, tuple[float, float, bool]], below_one: tuple[str, ...] = ()) -> None:
    """ValueError naming the option and its allowed range for the first value of `cfg` outside its range in
    `ranges` (name -> (low, high, low allowed); high is allowed unless the name is in `below_one`). None passes
    where a dataclass field's default is None (or, for an argparse Namespace, always); with a dataclass, every
    other float field must be finite, and a model field's options are checked as flat options. A value of the
    wrong type (a string for a number) is refused too."""
    if dataclasses.is_dataclass(cfg):
        values = flatten(cfg)
        defaults = flat_defaults(type(cfg))
    else:
        values = {name: getattr(cfg, name) for name in ranges}
        defaults = dict.fromkeys(ranges)
    for name, default in defaults.items():
        value = values[name]
        if name not in ranges:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{_option(name)} must be a finite number, got {value}")
            continue
        if value is None and default is None:
            continue
        low, high, low_ok = ranges[name]
        high_ok = name not in below_one and high != math.inf  # infinity itself is never allowed
        shown = f"{'[' if low_ok else '('}{low:g}, {'inf' if high == math.inf else high}{']' if high_ok else ')'}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{_option(name)} must be a number in {shown}, got {value!r}")
        inside = (low <= value if low_ok else low < value) and (value <= high if high_ok else value < high)
        if not inside or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{_option(name)} must be in {shown}, got {value}")


def memory_estimate(cfg: Any) -> int:
    """A rough lower bound of the bytes training `cfg` needs, computed with Python ints (no overflow) from the
    sizes any job's config has (flat: its model's options among them): float32 weights, gradients and AdamW's
    two moments (4 copies), and the activations of one micro-batch kept for backward (per token and layer: ~16
    widths, the feed-forward's hidden units twice, and one attention row per head)."""
    c = flatten(cfg) if dataclasses.is_dataclass(cfg) else vars(cfg)
    width = int(c.get("n_embd", 0) or c.get("d_model", 0) or 0)
    layers = int(c.get("n_layer", 0) or c.get("num_layers", 0)
                 or c.get("num_encoder_layers", 0) + c.get("num_decoder_layers", 0))
    ff = int(c.get("dim_feedforward", 0) or 4 * width)
    heads = int(c.get("n_head", 0) or c.get("nhead", 0) or 1)
    T = int(c.get("block_size", 0) or 1)
    vocab = int(c.get("vocab_size", 0) or 256)
    params = layers * (4 * width * width + 2 * width * ff) + vocab * width + T * width
    tokens = int(c["batch_size"]) * T
    activations = tokens * (layers * (16 * width + 2 * ff + heads * T) + 3 * vocab)
    return 4 * (4 * params + activations)


def check_memory(cfg: Any) -> None:
    """ValueError when training `cfg` would need more memory than the machine has (before anything is
    allocated: a typo such as --n-layer 1000000000 fails here, not in the allocator)."""
    need, have = memory_estimate(cfg), checkpoint_schema.physical_memory()
    if have is not None and need > have:
        c = flatten(cfg)
        sizes = ", ".join(f"{_option(k)} {c[k]}" for k in ("n_layer", "num_layers", "n_embd", "d_model",
                                                           "block_size", "batch_size") if k in c)
        raise ValueError(f"training this model would need about {need / 2**30:,.1f} GiB of memory (weights, "
                         f"gradients, optimizer state and activations; {sizes}), more than this machine's "
                         f"{have / 2**30:,.1f} GiB")
