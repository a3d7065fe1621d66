"""Image classification with a Vision Transformer (`minitransformer vit ...`).

Model (ViT, "An Image is Worth 16x16 Words"): the image is cut into P x P patches, each flattened and
projected to d_model (a Linear: the same as a convolution with stride P); a learned class token is put in
front; learned position embeddings are added; a pre-LN `mt.nn.TransformerEncoder` runs over the
1 + (H/P)(W/P) tokens; the class token's final state, layer-normed, goes to a linear head.

Data:
  digits         scikit-learn's bundled 8x8 handwritten digits (1,797 images; `pip install scikit-learn`,
                 the [vit] extra), with a fixed stratified 80/20 split. Patches 2x2 -> 16 tokens.
  fashion-mnist  Zalando's 28x28 clothing images (60,000 train, 10,000 test), read from the IDX files of
                 Debian's dataset-fashion-mnist package (`apt-get install dataset-fashion-mnist`) with the IDX
                 reader below. Patches 4x4 -> 49 tokens.
Pixel values are scaled to [0, 1] and standardised with the training set's mean and std. `--plot-attention`
saves attention.png: the class token's attention over the patches (last layer, averaged over heads) for a few
test images.
"""

from __future__ import annotations

import gzip
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import creation
from ..autograd import no_grad
from ..nn import functional as F
from ..nn import init
from ..nn.layers import LayerNorm, Linear
from ..nn.module import Module, Parameter
from ..nn.transformer import TransformerEncoder, TransformerEncoderLayer
from ..ops import cat
from ..tensor import Tensor
from ..training.config import LoopConfig, check_heads, job_config, model_field
from ..training.loop import Job
from .common import confusion_matrix, format_confusion, macro_f1
from .steps import build, fit_timed, load_trained, report_text, start_run

DATASETS = ("digits", "fashion-mnist")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]


# ---- data -----------------------------------------------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format; gzip-compressed when the name ends in .gz) -> array. The header is two
    zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the
    number of dimensions, then each dimension as a big-endian uint32; the data follow, big-endian."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    types = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in types:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(types[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = raw[4 + 4 * ndim:]
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} data bytes, the header {shape} needs {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_dataset(name: str, seed: int = 0) -> dict[str, Any]:
    """-> {"x_train", "y_train", "x_test", "y_test" (images (N, H, W) float32 in [0, 1]), "labels"}."""
    if name == "digits":
        try:
            from sklearn.datasets import load_digits  # optional dependency
        except ImportError:
            raise ValueError("the digits data set comes with scikit-learn: pip install scikit-learn "
                             "(or pip install 'minitransformer[vit]')") from None
        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)
        y = d.target.astype(np.int64)
        tr, te = stratified_split(y, 0.2, 0)  # fixed split, whatever the training seed
        return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te],
                "labels": [str(i) for i in range(10)]}
    if name == "fashion-mnist":
        files = {k: FASHION_DIR / f"{k}-idx{3 if 'images' in k else 1}-ubyte.gz"
                 for k in ("train-images", "train-labels", "t10k-images", "t10k-labels")}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise ValueError(f"Fashion-MNIST not found ({missing[0]}): install Debian's package with "
                             "`sudo apt-get install dataset-fashion-mnist`")
        arr = {k: read_idx(p) for k, p in files.items()}
        return {"x_train": (arr["train-images"] / 255.0).astype(np.float32),
                "y_train": arr["train-labels"].astype(np.int64),
                "x_test": (arr["t10k-images"] / 255.0).astype(np.float32),
                "y_test": arr["t10k-labels"].astype(np.int64), "labels": FASHION_LABELS}
    raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, got {name!r}")


def patchify(images: np.ndarray, p: int) -> np.ndarray:
    """(B, H, W) -> (B, (H/p)(W/p), p*p): non-overlapping p x p patches, row by row, each flattened."""
    B, H, W = images.shape
    x = images.reshape(B, H // p, p, W // p, p)                   # (B, H/p, p, W/p, p)
    return x.transpose(0, 1, 3, 2, 4).reshape(B, (H // p) * (W // p), p * p)


# ---- model ----------------------------------------------------------------------------------------------------
@dataclass
class ViTConfig:
    image_size: int
    patch_size: int
    n_classes: int
    d_model: int = 64
    nhead: int = 4
    num_layers: int = 4
    dim_feedforward: int = 128
    dropout: float = 0.0
    mean: float = 0.0  # input standardisation (the training set's pixel mean and std)
    std: float = 1.0


class ViT(Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image size {cfg.image_size} is not a multiple of the patch size {cfg.patch_size}")
        self.config = cfg
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embed = Linear(cfg.patch_size**2, cfg.d_model)
        self.cls_token = Parameter(creation.zeros(1, 1, cfg.d_model))
        self.pos_embed = Parameter(creation.zeros(1, n_patches + 1, cfg.d_model))
        init.normal_(self.pos_embed, 0.0, 0.02)
        init.normal_(self.cls_token, 0.0, 0.02)
        layer = TransformerEncoderLayer(cfg.d_model, cfg.nhead, cfg.dim_feedforward, cfg.dropout, "gelu",
                                        batch_first=True, norm_first=True)
        self.encoder = TransformerEncoder(layer, cfg.num_layers, LayerNorm(cfg.d_model))
        self.head = Linear(cfg.d_model, cfg.n_classes)

    def tokens(self, images: np.ndarray) -> Tensor:
        """images (B, H, W) in [0, 1] -> the encoder's input (B, 1 + N, d): the class token, then the
        patches, plus positions."""
        x = (np.asarray(images, dtype=np.float32) - self.config.mean) / self.config.std
        patches = self.patch_embed(creation.tensor(patchify(x, self.config.patch_size)))   # (B, N, d)
        B = patches.shape[0]
        return cat([self.cls_token.expand(B, 1, self.config.d_model), patches], dim=1) + self.pos_embed

    def forward(self, images: np.ndarray) -> Tensor:
        """images (B, H, W) -> logits (B, n_classes)."""
        return self.head(self.encoder(self.tokens(images))[:, 0])

    @no_grad()
    def class_attention(self, images: np.ndarray) -> np.ndarray:
        """The class token's attention over the patches in the last layer, averaged over heads: (B, H/P, W/P)."""
        x = self.tokens(images)
        layers = self.encoder.layers
        for layer in list(layers)[:-1]:
            x = layer(x)
        last = layers[len(layers) - 1]
        h = last.norm1(x) if last.norm_first else x
        _, weights = last.self_attn(h, h, h, need_weights=True, average_attn_weights=True)  # (B, 1+N, 1+N)
        side = self.config.image_size // self.config.patch_size
        return weights.numpy()[:, 0, 1:].reshape(-1, side, side)


# ---- the job --------------------------------------------------------------------------------------------------
@job_config
class ViTTrainConfig(LoopConfig):
    """Options of `minitransformer vit train`."""

    dataset: str = "digits"          # digits or fashion-mnist
    patch_size: int = 0              # 0: 2 for digits (8x8), 4 for fashion-mnist (28x28)
    # the model; its options are flat (--d-model), its image and patch sizes, classes, mean and std the data's
    model: ViTConfig = model_field(ViTConfig(image_size=0, patch_size=0, n_classes=0),
                                   options=("d_model", "nhead", "num_layers", "dim_feedforward", "dropout"))
    max_iters: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.05
    eval_interval: int = 250
    eval_iters: int = 5
    out: str = "out/vit"

    POSITIVE = LoopConfig.POSITIVE + ("d_model", "nhead", "num_layers", "dim_feedforward")
    RANGES = {**LoopConfig.RANGES, "patch_size": (0, math.inf, True), "dropout": (0, 1, True)}  # patch 0: default
    BELOW_ONE = LoopConfig.BELOW_ONE + ("dropout",)

    def validate(self) -> None:
        super().validate()
        check_heads(self.model, "d_model", "nhead")
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")


@no_grad()
def predict_images(model: ViT, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = [model(images[b:b + batch_size]).numpy().argmax(-1) for b in range(0, len(images), batch_size)]
    model.train(was_training)
    return np.concatenate(out)


def evaluate(model: ViT, x: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    pred = predict_images(model, x)
    cm = confusion_matrix(y, pred, len(labels))
    return {"accuracy": float((pred == y).mean()), "macro_f1": macro_f1(cm), "confusion": cm,
            "confusion_text": format_confusion(cm, labels), "n_test": len(y), "seconds": time.perf_counter() - t0}


def attention_figure(model: ViT, images: np.ndarray, labels: list[str], truth: np.ndarray, path: Path) -> Path | None:
    """A PNG with, for each image, the image and the class token's attention over its patches (matplotlib)."""
    try:
        import matplotlib  # optional dependency

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # optional dependency
    except ImportError:
        return None
    att = model.class_attention(images)
    pred = predict_images(model, images)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4))
    for i in range(n):
        axes[0, i].imshow(images[i], cmap="gray")
        axes[0, i].set_title(f"{labels[pred[i]]}" + ("" if pred[i] == truth[i] else f"\n(true {labels[truth[i]]})"),
                             fontsize=7)
        axes[1, i].imshow(att[i], cmap="viridis")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("[CLS] attention", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def train(cfg: ViTTrainConfig, overrides: dict[str, Any] | None = None, progress: bool = True,
          plot_attention: bool = False) -> dict[str, Any]:
    """Train (or resume) a ViT per `cfg`, then evaluate it on the test images."""
    cfg, resumed = start_run(cfg, overrides, progress)
    data = load_dataset(cfg.dataset)
    x_train, y_train = data["x_train"], data["y_train"]
    patch = cfg.patch_size or (2 if cfg.dataset == "digits" else 4)
    model = build(ViT, cfg.model, resumed, image_size=x_train.shape[1], patch_size=patch, n_classes=len(data["labels"]),
                  mean=float(x_train.mean()), std=float(x_train.std()))
    mcfg = model.config
    split = {"train": (x_train, y_train), "val": (data["x_test"], data["y_test"])}

    def loss(which: str, rng: np.random.Generator) -> Tensor:
        x, y = split[which]
        ix = rng.integers(0, len(y), cfg.batch_size)
        return F.cross_entropy(model(x[ix]), creation.tensor(y[ix]))

    probe = np.random.default_rng(0).permutation(len(data["y_test"]))[:1000]

    def metrics() -> dict[str, float]:
        return {"accuracy": evaluate(model, data["x_test"][probe], data["y_test"][probe], data["labels"])["accuracy"]}

    n_params = sum(p.numel() for p in model.parameters())
    side = mcfg.image_size // patch
    job = Job(model, loss, {"task": "vit", "model_config": asdict(mcfg), "labels": data["labels"]}, metrics=metrics,
              describe=f"data: {cfg.dataset}, {len(y_train):,} training and {len(data['y_test']):,} test images "
                       f"{mcfg.image_size}x{mcfg.image_size}, patches {patch}x{patch} ({side * side} tokens + class "
                       f"token); model: {n_params / 1e6:.2f}M parameters",
              tokens_per_step=cfg.batch_size * (side * side + 1) * cfg.grad_accum)
    result = fit_timed(cfg, job, resumed, progress)
    final = evaluate(model, data["x_test"], data["y_test"], data["labels"])
    plot = None
    if plot_attention:
        plot = plot_attention_png(model, data, Path(cfg.out))
    return {**result, **final, "model": model, "labels": data["labels"], "attention_png": str(plot) if plot else None}


def plot_attention_png(model: ViT, data: dict[str, Any], out: Path) -> Path | None:
    """out/attention.png for 8 test images; None, with one line on stderr saying why, without matplotlib."""
    idx = np.random.default_rng(1).permutation(len(data["y_test"]))[:8]
    path = attention_figure(model, data["x_test"][idx], data["labels"], data["y_test"][idx], out / "attention.png")
    if path is None:
        print(f"{out / 'attention.png'} not drawn: matplotlib is not installed (pip install 'minitransformer[viz]')",
              file=sys.stderr)
    return path


def load(out: str | Path) -> tuple[ViT, list[str], dict[str, Any]]:
    model, doc = load_trained(out, "vit", "a ViT's", ViT, ViTConfig)
    return model, doc["labels"], doc


def evaluate_checkpoint(out: str | Path) -> dict[str, Any]:
    model, labels, doc = load(out)
    data = load_dataset(doc["train_config"]["dataset"])
    return evaluate(model, data["x_test"], data["y_test"], labels)


def read_image(path: str | Path, size: int) -> np.ndarray:
    """A .npy array (H, W) with values in [0, 1], or a PNG (matplotlib reads it; colours averaged to grey),
    -> (size, size) float32. The size must already match the model's."""
    path = Path(path)
    if path.suffix == ".npy":
        img = np.load(path).astype(np.float32)
    else:
        try:
            import matplotlib.image as mpimg  # optional dependency
        except ImportError:
            raise ValueError(f"{path}: reading images other than .npy needs matplotlib") from None
        img = np.asarray(mpimg.imread(path), dtype=np.float32)
        if img.ndim == 3:
            img = img[..., :3].mean(axis=-1)
    if img.shape != (size, size):
        raise ValueError(f"{path}: image of shape {img.shape}, the model takes ({size}, {size})")
    return img


# ---- the command line's view (minitransformer vit ...) ----------------------------------------------------------
CONFIG = ViTTrainConfig
HELP = {"dataset": "digits (scikit-learn) or fashion-mnist (Debian's dataset-fashion-mnist)",
        "patch_size": "patch side in pixels (0: 2 for digits, 4 for fashion-mnist)"}
# the options of `vit eval` and `vit predict` besides --out
EVAL_OPTIONS: tuple[str, ...] = ()


def eval_options(values: dict[str, Any]) -> dict[str, Any]:
    return {}


def predict(out: str | Path, files: list[str]) -> list[str]:
    model, labels, _ = load(out)
    images = np.stack([read_image(f, model.config.image_size) for f in files])
    return [labels[int(i)] for i in predict_images(model, images)]


def report(result: dict[str, Any]) -> str:
    lines = [f"test accuracy {100 * result['accuracy']:.2f}% on {result['n_test']:,} images, macro-F1 "
             f"{result['macro_f1']:.4f}", result["confusion_text"]]
    if result.get("attention_png"):
        lines.append(f"attention map: {result['attention_png']}")
    return report_text(result, lines)

