"""The steps every job's `train` and `load` share around loop.fit (the language model's, translation's,
classification's, the ViT's, speech's): start a run or resume one, build the model from the job's model config
and what the data decides, fit and time it, load a checkpoint's model, and the report's first line. What differs
between jobs (the data, the loss, the metrics, the evaluation) stays in each job's module, in the order it runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import checkpoint
from ..nn.module import Module
from ..training.loop import Job, fit, prepare_run, resume_config


def start_run(cfg: Any, overrides: dict[str, Any] | None, progress: bool) -> tuple[Any, dict[str, Any] | None]:
    """(the config to train with, the checkpoint to continue or None). With cfg.resume, the config saved with
    the checkpoint in cfg.out, with `overrides` (the options given explicitly on the command line) applied
    (loop.resume_config); then loop.prepare_run: validate, choose the kernels, seed."""
    resumed = None
    if cfg.resume:
        cfg, resumed = resume_config(type(cfg), cfg.out, overrides)
    prepare_run(cfg, progress)
    return cfg, resumed


def build(model_cls: Callable[[Any], Module], model_cfg: Any, resumed: dict[str, Any] | None,
          **given: Any) -> Any:
    """The model of the job's model config with `given` filled in (what the data decides: vocabulary sizes,
    max_len, ...), holding the resumed checkpoint's weights when there is one."""
    model = model_cls(dataclasses.replace(model_cfg, **given))
    if resumed:
        model.load_state_dict(resumed["model"])
    return model


def fit_timed(cfg: Any, job: Job, resumed: dict[str, Any] | None, progress: bool) -> dict[str, Any]:
    """loop.fit's result, with the seconds it took as "train_seconds"."""
    t0 = time.perf_counter()
    result = fit(cfg, job, resumed, progress)
    return {**result, "train_seconds": time.perf_counter() - t0}


def load_trained(out: str | Path, task: str, what: str, model_cls: Callable[[Any], Module],
                 config_cls: type) -> tuple[Any, dict[str, Any]]:
    """(the model in eval mode, the manifest) of the `task` checkpoint in `out`; raises CheckpointError, naming
    the weight file when its weights do not fit the model that model_config describes."""
    doc, state = checkpoint.load_task(out, task, what)
    model = model_cls(config_cls(**doc["model_config"]))
    with checkpoint.building(out, doc):
        model.load_state_dict(state)
    return model.eval(), doc


def report_text(result: dict[str, Any], lines: list[str]) -> str:
    """A task's report: `lines`, after one on the training when `result` comes from train (not eval)."""
    if "train_seconds" in result:
        lines = [f"done: step {result['step']}, val loss {result['val_loss']:.4f}, trained in "
                 f"{result['train_seconds']:.0f} s; checkpoint in {result['out']}", *lines]
    return "\n".join(lines)
