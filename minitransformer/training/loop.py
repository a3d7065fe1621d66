"""The training loop every job shares (the language model of `minitransformer train`, translation,
classification, the ViT): AdamW with weight decay on the 2-D weights, nanoGPT's warmup-then-cosine learning
rate, gradient accumulation and clipping, evaluation every `eval_interval` steps, atomic checkpoints with the
optimizer and RNG states (so a resumed run continues exactly), Ctrl-C that saves before exiting, a progress
bar on a terminal and nanoGPT's `iter N: loss X, time Yms` lines elsewhere, and the loss curve as history.json
and loss.png. docs/training.md walks through it.

A job hands `fit` its config (a LoopConfig, config.py) and a `Job`: the model, a function that draws one batch
of a split and returns its mean loss, the JSON that describes the model for its checkpoint, and optionally more
metrics for each evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend, distributed, profiler
from ..autograd import no_grad
from ..io import checkpoint
from ..nn.module import Module
from ..nn.utils import clip_grad_norm_
from ..optim import AdamW, weight_decay_groups
from ..optim.lr_scheduler import warmup_cosine
from ..random import get_rng_state, manual_seed, seed_global, set_rng_state
from ..tensor import Tensor
from .config import LoopConfig, flat_defaults, flatten

BATCH_STREAM, EVAL_STREAM, RANK_STREAM = 0x6261746368, 0x6576616C, 0x72616E6B  # "batch", "eval", "rank"
PROFILE_WARMUP = 3  # steps run before --profile starts recording: the first ones allocate and fill caches


def check_out(cfg: LoopConfig) -> None:
    """Refuse to train from scratch into a directory that already holds a checkpoint, unless --overwrite:
    the new run's first save would replace it."""
    if not (cfg.resume or cfg.overwrite or cfg.eval_only):
        checkpoint.refuse_to_replace(cfg.out, "pass --resume (or --init_from=resume) to continue it, or --overwrite "
                                     "to start over and replace it")


def lr_at(it: int, cfg: LoopConfig) -> float:
    """The learning rate of step `it`: nanoGPT's warmup and cosine decay (optim.lr_scheduler.warmup_cosine) to
    --min-lr at --lr-decay-iters (default --max-iters); with --no-decay-lr, --lr throughout."""
    if not cfg.decay_lr:
        return cfg.lr
    decay = cfg.lr_decay_iters if cfg.lr_decay_iters is not None else cfg.max_iters
    return warmup_cosine(it, cfg.lr, cfg.min_lr, cfg.warmup_iters, decay)


def make_optimizer(model: Module, cfg: LoopConfig) -> AdamW:
    """The model's own `configure_optimizers` where it has one (the GPT, as nanoGPT's train.py does), else AdamW
    with weight decay on the 2-D weights only: the same two groups either way, so checkpoints resume alike."""
    if hasattr(model, "configure_optimizers"):
        return model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    return AdamW(weight_decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def saved_config(cls: type, doc: dict[str, Any]) -> Any:
    """The job config `cls` saved in a checkpoint manifest. train_config is flat (the model's options beside
    the job's, as the command line spells them: `flatten`); options `cls` does not know are left out."""
    known = flat_defaults(cls)
    return cls(**{k: v for k, v in doc["train_config"].items() if k in known})


def resume_config(cls: type, out: str | Path, overrides: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The config saved with the checkpoint in `out`, with `overrides` (the options given explicitly on the
    command line) applied, and the loaded checkpoint (manifest, model state, optimizer arrays)."""
    loaded = checkpoint.load(out)
    doc = loaded[0]
    if "optimizer" not in doc:
        raise ValueError(f"the checkpoint in {out} holds no optimizer state (it was written by "
                         f"`minitransformer {doc.get('written_by', 'quantize')}` for inference); train from "
                         "the checkpoint it was made from")
    saved = saved_config(cls, doc)
    # --profile is for the run that asks for it: a resumed run profiles only when told again
    again = {"profile": 0, **(overrides or {}), "resume": True}
    return dataclasses.replace(saved, **again), {"doc": doc, "model": loaded[1], "optim": loaded[2]}


@dataclass
class Job:
    """What a job hands to `fit`.

    model     the Module to train (already holding the resumed weights, when resuming)
    loss      (split, rng) -> the mean loss of one batch of that split ("train" or "val"), drawn with rng
    manifest  JSON-serialisable description saved with every checkpoint: at least "model_config"; a
              "tokenizer" entry is also written to tokenizer.json
    metrics   optional () -> {name: value}, run (without gradients) at each evaluation and logged with it
    describe  one line printed when training starts (data, model size)
    tokens_per_step  tokens in one optimizer step (0: the progress line shows no tokens/s)
    after_step  optional () -> None, run after each optimizer step (pruning re-applies its masks there)
    """

    model: Module
    loss: Callable[[str, np.random.Generator], Tensor]
    manifest: dict[str, Any]
    metrics: Callable[[], dict[str, float]] | None = None
    describe: str = ""
    tokens_per_step: int = 0  # tokens in one optimizer step, for the tokens/s on the progress line
    after_step: Callable[[], None] | None = None


class Progress:
    """A live progress line: tqdm when installed, a plain carriage-return line otherwise."""

    def __init__(self, total: int, initial: int, enabled: bool = True) -> None:
        self.bar = None
        self.enabled = enabled and sys.stderr.isatty()
        if self.enabled:
            try:
                from tqdm import tqdm  # optional dependency

                self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, leave=False)
            except ImportError:
                self.bar = None

    def update(self, step: int, total: int, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            print(f"\rstep {step}/{total} {text}", end="", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            if self.enabled:
                print("\r" + " " * 100 + "\r", end="", file=sys.stderr)
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)


def _optim_split(opt: AdamW) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Optimizer state -> (arrays for safetensors, the JSON rest)."""
    sd = opt.state_dict()
    arrays, scalars = {}, {}
    for i, st in sd["state"].items():
        scalars[str(i)] = {k: v for k, v in st.items() if not hasattr(v, "shape")}
        for k, v in st.items():
            if hasattr(v, "shape"):
                arrays[f"{i}.{k}"] = v
    return arrays, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optim_join(arrays: dict[str, np.ndarray], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in rest["scalars"].items()}
    for key, arr in arrays.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = arr
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(out: Path, step: int, job: Job, opt: AdamW, cfg: LoopConfig,
                    batch_rng: np.random.Generator, w: distributed.World | None = None) -> None:
    """Every rank calls this (the random states of all ranks are gathered); rank 0 writes."""
    w = w or distributed.World()
    rng = {"global": get_rng_state(), "batches": batch_rng.bit_generator.state}
    if w.size > 1:
        rng["global_by_rank"] = w.gather(get_rng_state())
        rng["batches_by_rank"] = w.gather(batch_rng.bit_generator.state)
    if not w.is_main:
        return
    state = {k: v.numpy() for k, v in job.model.state_dict().items()}
    bad = [k for k, v in state.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:  # never replace a good checkpoint with weights that hold NaN or infinity
        raise RuntimeError(f"step {step}: the weights {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''} hold "
                           f"NaN or infinity; not saved: the checkpoint in {out} is the last good one (try a "
                           "lower --lr or --grad-clip)")
    arrays, rest = _optim_split(opt)
    manifest = {**job.manifest, "optimizer": rest, "train_config": flatten(cfg), "rng": rng}
    checkpoint.save(out, step, state, arrays, manifest)


class _StopRequest:
    """Ctrl-C once: finish the current step, save, exit. Twice: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> _StopRequest:
        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit now)",
                  file=sys.stderr, flush=True)

        try:
            self.previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def prepare_run(cfg: LoopConfig, progress: bool) -> None:
    """Validate the options, select the kernels backend (compiling them once, with a message) and seed the
    global generator: what every job does before it builds its model. Refuses (ValueError) to start from
    scratch over a checkpoint in cfg.out unless cfg.overwrite."""
    cfg.validate()
    check_out(cfg)
    backend.use(cfg.backend)
    backend.warmup(verbose=progress)
    manual_seed(cfg.seed)


def fit(cfg: LoopConfig, job: Job, resumed: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train `job.model` per `cfg` (continuing the checkpoint `resumed`, from `resume_config`, when given);
    returns {"step", "train_loss", "val_loss", "out", "metrics"}."""
    out = Path(cfg.out)
    model = job.model
    if cfg.device != "cpu":
        model.to(cfg.device)
    # The batches get their own stream, derived from the seed through a different SeedSequence than the one
    # manual_seed gives the weights: with the same stream, the first batch positions would be made from the
    # very bits that drew the initial weights.
    w = distributed.world()
    ranks = [] if w.size == 1 else [w.rank]  # under MPI each rank draws its own batches and dropout masks
    batch_rng = np.random.default_rng([cfg.seed, BATCH_STREAM, *ranks])
    if w.size > 1:
        w.broadcast_params(list(model.parameters()))  # one starting point for every rank
        seed_global([cfg.seed, RANK_STREAM, w.rank])
    opt = make_optimizer(model, cfg)
    step = 0
    if resumed is not None:
        doc = resumed["doc"]
        opt.load_state_dict(_optim_join(resumed["optim"], doc["optimizer"]))
        step = int(doc["step"])
        saved_ranks = len(doc["rng"].get("batches_by_rank", [None]))
        if saved_ranks != w.size:
            raise ValueError(f"the checkpoint in {out} was written by {saved_ranks} rank(s); resume it with as many "
                             f"(this run has {w.size})")
        set_rng_state(doc["rng"]["global_by_rank"][w.rank] if w.size > 1 else doc["rng"]["global"])
        batch_rng.bit_generator.state = doc["rng"]["batches_by_rank"][w.rank] if w.size > 1 else doc["rng"]["batches"]
        # the evaluation at the resumed step runs again and records itself: drop the saved entries from there on
        cfg.history[:] = [h for h in cfg.history if h["step"] < step]
    log = Progress(cfg.max_iters, step, enabled=progress and w.is_main)
    say = log.write if w.is_main else (lambda line: None)
    # nanoGPT's line per log_interval steps, unless the progress bar shows the same numbers on the same terminal
    log_steps = cfg.log_interval > 0 and not (log.enabled and sys.stdout.isatty())
    best_val = min((h["val"] for h in cfg.history), default=math.inf)  # always_save_checkpoint off: to beat
    where = f"{w.size} ranks (MPI), " if w.size > 1 else ""
    say(job.describe + ("; " if job.describe else "") + where + (f"resuming at step {step}" if resumed else "starting"))

    @no_grad()
    def evaluate() -> dict[str, float]:
        model.eval()
        # never moves the training streams; under MPI the eval_iters batches are shared out among the ranks
        eval_rng = np.random.default_rng([cfg.seed, EVAL_STREAM, step, *ranks])
        n = -(-cfg.eval_iters // w.size)
        values = w.mean({split: float(np.mean([job.loss(split, eval_rng).item() for _ in range(n)]))
                         for split in ("train", "val")})
        if job.metrics is not None:
            values.update(job.metrics())
        model.train()
        return values

    values: dict[str, float] = {}
    last_loss = float("nan")
    skipped = 0  # steps left out for a non-finite loss or gradient (--skip-nonfinite)
    params = list(model.parameters())
    profiling = StepProfiler(cfg.profile, step + min(PROFILE_WARMUP, max(cfg.max_iters - step - cfg.profile, 0)),
                             out, say if w.is_main else None)
    with _StopRequest() as stop, profiling:
        while True:
            if cfg.eval_only or step % cfg.eval_interval == 0 or step == cfg.max_iters:
                with profiler.record_function("evaluate"):  # inside a --profile window: its own row
                    values = evaluate()
                extra = "".join(f", {k} {v:.4f}" for k, v in values.items() if k not in ("train", "val"))
                say(f"step {step}: train loss {values['train']:.4f}, val loss {values['val']:.4f}{extra}")
                if cfg.eval_only:
                    break
                cfg.history.append({"step": step, **values})
                if step > 0 and (cfg.always_save_checkpoint or values["val"] < best_val):
                    with profiler.record_function("save_checkpoint"):
                        save_checkpoint(out, step, job, opt, cfg, batch_rng, w)
                best_val = min(best_val, values["val"])
            if step >= cfg.max_iters or stop.requested:
                break
            profiling.before(step)
            t0 = time.perf_counter()
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            for _ in range(cfg.grad_accum):
                with profiler.record_function("forward"):
                    loss = job.loss("train", batch_rng)
                with profiler.record_function("backward"):
                    # the mean over grad_accum micro-batches: each contributes 1/grad_accum of the gradient
                    (loss / cfg.grad_accum).backward()
            with profiler.record_function("optimizer"):
                w.allreduce_mean_grads(params)  # the mean over ranks: the same step on every rank
                # the norm of every gradient together (clipped to grad_clip; inf: measured only): a NaN or
                # infinity anywhere in the loss or the gradients shows here, before the optimizer step spreads it
                norm = float(clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf).item())
                last_loss = loss.item()
                finite = math.isfinite(last_loss) and math.isfinite(norm)
                if finite:
                    opt.step()
                elif not cfg.skip_nonfinite:
                    raise RuntimeError(f"step {step}: non-finite loss {last_loss}, gradient norm {norm}; stopped "
                                       f"before the weights changed, the last good checkpoint in {out} is kept (try "
                                       "a lower --lr or --grad-clip, or --skip-nonfinite to skip such steps)")
                opt.zero_grad(set_to_none=True)  # skipped: no update, as GradScaler does; the schedule goes on
                if finite and job.after_step is not None:
                    job.after_step()
            step += 1
            profiling.after(step)
            if not finite:
                skipped += 1
                say(f"step {step - 1}: skipped (loss {last_loss}, gradient norm {norm}); {skipped} step(s) skipped "
                    "so far")
                continue
            dt = time.perf_counter() - t0
            speed = f"{job.tokens_per_step * w.size / dt:,.0f} tok/s" if job.tokens_per_step else ""
            log.update(step, cfg.max_iters, f"loss {last_loss:.4f} lr {lr:.2e} {dt * 1e3:.0f} ms/step"
                       + (f" {speed}" if speed else ""))
            if log_steps and (step - 1) % cfg.log_interval == 0:  # numbered from 0, as nanoGPT's iter_num
                say(f"iter {step - 1}: loss {last_loss:.4f}, time {dt * 1e3:.2f}ms" + (f", {speed}" if speed else ""))
        if stop.requested:
            save_checkpoint(out, step, job, opt, cfg, batch_rng, w)
            say(f"saved a checkpoint at step {step} in {out}; continue with --resume")
    log.close()
    if w.is_main and not cfg.eval_only:
        _plot(cfg.history, out)
    return {"step": step, "train_loss": values.get("train", last_loss), "val_loss": values.get("val"),
            "out": str(out), "skipped": skipped,
            "metrics": {k: v for k, v in values.items() if k not in ("train", "val")}}


class StepProfiler:
    """--profile N: records steps [start, start + N) with mt.profiler, then prints the op table and writes
    trace.json into --out (beside the checkpoint). Does nothing when N is 0."""

    def __init__(self, steps: int, start: int, out: Path, say: Callable[[str], None] | None) -> None:
        self.steps, self.start, self.out, self.say = steps, start, out, say
        self.prof: profiler.profile | None = None

    def __enter__(self) -> StepProfiler:
        return self

    def before(self, step: int) -> None:
        if self.steps and self.prof is None and step == self.start:
            self.prof = profiler.profile(record_shapes=True)
            self.prof.__enter__()

    def after(self, step: int) -> None:
        if self.prof is None:
            return
        self.prof.step()
        if step >= self.start + self.steps:
            self.finish()

    def finish(self, report: bool = True) -> None:
        prof, self.prof, self.steps = self.prof, None, 0
        if prof is None:
            return
        prof.__exit__(None, None, None)
        if self.say is None or not report:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(self.out / "trace.json")
        n = len([e for e in prof.events if e.kind == "step"])
        self.say(f"profile of {n} step(s) from step {self.start} (mt.profiler; trace: {self.out / 'trace.json'}, "
                 "open it in Perfetto or chrome://tracing):\n"
                 + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        # a run stopped by Ctrl-C inside the window still reports what it recorded; one that failed only closes
        # the profile, so that nothing here can hide its error
        self.finish(report=exc_type is None)


def _plot(history: list[dict[str, float]], out: Path) -> None:
    """out/history.json, and out/loss.png (train and val loss against step) when matplotlib is installed;
    without it, one line on stderr says so."""
    (out / "history.json").write_text(json.dumps(history))
    try:
        import matplotlib  # optional dependency

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # optional dependency
    except ImportError:
        print(f"{out / 'loss.png'} not drawn: matplotlib is not installed (pip install 'minitransformer[viz]'); "
              f"the losses are in {out / 'history.json'}", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["train"] for h in history], label="train")
    ax.plot(steps, [h["val"] for h in history], label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
