"""The applications (minitransformer/tasks): the corpus generators against known values, the metrics against
hand-computed values, decoding (beam width 1 is greedy; beam search beats greedy on a toy model built for
it), the IDX reader on files written here, clear errors for malformed TSV lines, and each task training a
tiny model for a few seconds with its loss falling and its accuracy above chance."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from minitransformer.__main__ import main
from minitransformer.tasks import classification as C
from minitransformer.tasks import generators as G
from minitransformer.tasks import translation as T
from minitransformer.tasks import vit as V
from minitransformer.tasks.common import (
    EOS,
    Vocab,
    chrf,
    confusion_matrix,
    exact_match,
    macro_f1,
    read_tsv,
)
from minitransformer.tasks.decoding import beam_search, greedy

# ---- number words -------------------------------------------------------------------------------------------
ENGLISH = {0: "zero", 7: "seven", 11: "eleven", 13: "thirteen", 19: "nineteen", 20: "twenty", 21: "twenty one",
           45: "forty five", 100: "one hundred", 101: "one hundred one", 999: "nine hundred ninety nine",
           1000: "one thousand", 1_000_000: "one million", 2_000_000_000: "two billion",
           1_204_017: "one million two hundred four thousand seventeen",
           90_019: "ninety thousand nineteen"}
FRENCH = {0: "zéro", 1: "un", 11: "onze", 12: "douze", 13: "treize", 14: "quatorze", 15: "quinze", 16: "seize",
          17: "dix-sept", 18: "dix-huit", 19: "dix-neuf", 20: "vingt", 21: "vingt et un", 22: "vingt-deux",
          31: "trente et un", 61: "soixante et un", 70: "soixante-dix", 71: "soixante et onze",
          77: "soixante-dix-sept", 80: "quatre-vingts", 81: "quatre-vingt-un", 90: "quatre-vingt-dix",
          91: "quatre-vingt-onze", 99: "quatre-vingt-dix-neuf", 100: "cent", 101: "cent un", 200: "deux cents",
          201: "deux cent un", 280: "deux cent quatre-vingts", 1000: "mille", 1001: "mille un", 2000: "deux mille",
          21_000: "vingt et un mille", 80_000: "quatre-vingt mille", 200_000: "deux cent mille",
          1_000_000: "un million", 2_000_000: "deux millions", 80_000_000: "quatre-vingts millions",
          200_000_000: "deux cents millions", 1_000_000_000: "un milliard",
          1_204_017: "un million deux cent quatre mille dix-sept"}


@pytest.mark.parametrize("n", sorted(ENGLISH))
def test_english_words(n):
    assert G.english_words(n) == ENGLISH[n]


@pytest.mark.parametrize("n", sorted(FRENCH))
def test_french_words(n):
    assert G.french_words(n) == FRENCH[n]


def test_digits_are_grouped_by_three_and_out_of_range_numbers_are_refused():
    assert G.digits(1204017) == "1 204 017" and G.digits(7) == "7" and G.digits(1000) == "1 000"
    with pytest.raises(ValueError, match="outside"):
        G.english_words(-1)
    with pytest.raises(ValueError, match="outside"):
        G.french_words(10**12)


def test_date_formats_render_the_same_day():
    d = G.date_from_index(0)
    assert d.isoformat() == "1900-01-01"
    day = G.date_from_index((np.datetime64("2024-03-05") - np.datetime64("1900-01-01")).astype(int))
    rendered = [f(day) for f in G.DATE_FORMATS_EN]
    assert rendered[0] == "March 5, 2024" and rendered[4] == "5th of March 2024"
    assert rendered[6] == "Tuesday, March 5, 2024" and rendered[7] == "03/05/2024" and rendered[8] == "05.03.2024"
    assert G.DATE_FORMATS_FR[2](day) == "mardi 5 mars 2024"


def test_brackets():
    assert G.balanced("([]{})") and not G.balanced("([)]") and not G.balanced("((") and not G.balanced(")(")
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = G.random_balanced(rng, int(rng.integers(1, 8)))
        assert G.balanced(s)
        assert not G.balanced(G.near_miss(rng, s))


def test_built_in_corpora_are_split_by_value():
    train, test = T.builtin_pairs("numbers-fr", 3000, 300, seed=0)
    assert len(test) == 300 and not {s for s, _ in train} & {s for s, _ in test}
    train, test = T.builtin_pairs("dates", 3000, 300, seed=0)
    assert not {t for _, t in train} & {t for _, t in test}  # a held-out day never appears, in any format
    train, test = C.builtin_examples("brackets", 2000, 200, seed=0)
    assert not {t for _, t in train} & {t for _, t in test}
    labels = [label for label, _ in train]
    assert 0.35 < labels.count("balanced") / len(labels) < 0.65


# ---- metrics, vocabulary, TSV ------------------------------------------------------------------------------
def test_exact_match_and_chrf_against_hand_computed_values():
    assert exact_match(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    assert chrf(["abc"], ["abc"]) == pytest.approx(100.0)
    # "abc" vs "abd": unigram P = R = 2/3, bigram 1/2, trigram 0; no 4- to 6-grams (those orders are left out)
    assert chrf(["abc"], ["abd"]) == pytest.approx(100 * (2 / 3 + 1 / 2 + 0) / 3)
    # precision 1, recall 1/2 on unigrams only ("a" vs "ab" has no bigram in the hypothesis): F2 = 5PR/(4P+R)
    assert chrf(["a"], ["ab"]) == pytest.approx(100 * 5 * 1 * 0.5 / (4 * 1 + 0.5))
    assert chrf(["a b"], ["ab"]) == pytest.approx(100.0)  # whitespace is ignored
    assert chrf(["xyz"], ["abc"]) == 0.0


def test_confusion_matrix_and_macro_f1():
    cm = confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    # F1 per class: 0: 2*1/(2+1+1) = 0.5; 1: 2*2/(4+1+0) = 0.8; 2: 0
    assert macro_f1(cm) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_vocab_round_trip_and_unknown_tokens():
    v = Vocab.build(["un deux", "trois"], "word")
    assert v.decode(v.encode("deux un")) == "deux un"
    assert v.encode("quatre") == [3]  # <unk>
    c = Vocab.from_dict(Vocab.build(["abc"], "char").to_dict())
    assert c.decode(c.encode("cab") + [EOS] + c.encode("a")) == "cab"


def test_malformed_tsv_lines_name_the_file_and_line(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text("1\tone\n\n2 two\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs\.tsv, line 3: expected 2 non-empty tab-separated fields"):
        read_tsv(f)
    f.write_text("1\tone\n2\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2"):
        read_tsv(f)


# ---- decoding ------------------------------------------------------------------------------------------------
def random_model(V=6, seed=0):
    """A fixed pseudo-random next-token distribution for every prefix (a stand-in model)."""
    def next_logits(rows, prefixes):
        out = []
        for r, p in zip(rows, prefixes, strict=True):
            rng = np.random.default_rng([int(r)] + [int(t) for t in p] + [seed])
            out.append(rng.standard_normal(V) * 2)
        return np.array(out)
    return next_logits


def test_beam_width_one_is_greedy():
    for seed in range(5):
        f = random_model(seed=seed)
        assert beam_search(f, 6, max_len=8, beam=1, length_penalty=0.0) == greedy(f, 6, max_len=8)


def test_beam_search_finds_the_sequence_greedy_misses():
    # tokens: 4 = "a", 5 = "b". First step: a 0.6, b 0.4. After a, the next token is spread out (0.34 each
    # for a, b and <eos>); after b, <eos> has 0.9. Greedy takes a, then never does better than 0.6 * 0.34;
    # "b <eos>" has probability 0.36, and beam search of width 2 finds it.
    def probs(prefix):
        p = np.full(6, 1e-9)
        if len(prefix) == 1:
            p[4], p[5] = 0.6, 0.4
        elif prefix[-1] == 5:
            p[EOS], p[4] = 0.9, 0.1
        else:
            p[EOS], p[4], p[5] = 0.32, 0.34, 0.34
        return p / p.sum()

    def next_logits(rows, prefixes):
        return np.log(np.array([probs(list(p)) for p in prefixes]))

    assert greedy(next_logits, 1, max_len=3)[0][0] == 4
    assert beam_search(next_logits, 1, max_len=6, beam=2, length_penalty=0.0) == [[5]]


# ---- IDX -------------------------------------------------------------------------------------------------------
def write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_reader(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 4)).astype(np.uint8)
    for name in ("images.idx", "images.idx.gz"):
        write_idx(tmp_path / name, images)
        np.testing.assert_array_equal(V.read_idx(tmp_path / name), images)
    floats = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    write_idx(tmp_path / "f.idx", floats, code=0x0D)
    np.testing.assert_array_equal(V.read_idx(tmp_path / "f.idx"), floats)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        V.read_idx(tmp_path / "bad.idx")
    write_idx(tmp_path / "short.idx", images)
    (tmp_path / "short.idx").write_bytes((tmp_path / "short.idx").read_bytes()[:-5])
    with pytest.raises(ValueError, match="data bytes"):
        V.read_idx(tmp_path / "short.idx")


def test_patchify_keeps_each_patch_together():
    img = np.arange(16).reshape(1, 4, 4)
    p = V.patchify(img, 2)
    np.testing.assert_array_equal(p[0, 0], [0, 1, 4, 5])
    np.testing.assert_array_equal(p[0, 3], [10, 11, 14, 15])


# ---- tiny training runs ------------------------------------------------------------------------------------
def test_translation_trains_and_the_command_line_translates(tmp_path, capsys):
    cfg = T.TranslateConfig(corpus="dates", n_train=1000, n_test=40, max_iters=100, eval_interval=50,
                            batch_size=32, d_model=64, dim_feedforward=128, num_encoder_layers=1,
                            num_decoder_layers=1, dropout=0.0, lr=3e-3, warmup_iters=10, out=str(tmp_path / "tr"))
    r = T.train(cfg, progress=False)
    capsys.readouterr()
    first, last = cfg.history[0], cfg.history[-1]
    assert last["val"] < first["val"] - 1.0, cfg.history
    # the baseline: one constant answer, the training set's most common target, for every held-out date
    train_targets = [t for _, t in T.builtin_pairs("dates", 1000, 40, cfg.seed)[0]]
    constant = max(set(train_targets), key=train_targets.count)
    refs = [t for _, t in r["test_pairs"]]
    assert r["chrf"] > chrf([constant] * len(refs), refs) + 10, r["predictions"][:5]
    assert main(["translate", "--out", cfg.out, "March 5, 2024", "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("March 5, 2024\t") and len(out.strip().split("\t")[1]) == 10
    assert main(["translate", "eval", "--out", cfg.out]) == 0
    assert "exact match" in capsys.readouterr().out
    from minitransformer.io.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="a translate checkpoint, not a classifier's"):
        C.load(cfg.out)
    assert main(["sample", "--out", cfg.out]) == 2
    assert "a translate checkpoint, not a language model's" in capsys.readouterr().err


def test_text_classification_beats_chance_quickly(tmp_path):
    cfg = C.ClassifyConfig(task="langid", n_train=1000, n_test=200, max_iters=60, eval_interval=30,
                           out=str(tmp_path / "cl"))
    r = C.train(cfg, progress=False)
    assert r["accuracy"] > 0.8 and cfg.history[-1]["val"] < cfg.history[0]["val"]
    assert r["confusion"].sum() == 200
    # the saved checkpoint, through classify's own path (load, tokenize, label names), reproduces the trained
    # model's held-out accuracy exactly (classify reading the labels in reverse, planted, fails here)
    held_out = C.builtin_examples("langid", 1000, 200, cfg.seed)[1]
    predicted = C.classify(cfg.out, [text for _, text in held_out])
    assert np.mean([p == label for p, (label, _) in zip(predicted, held_out, strict=True)]) == r["accuracy"]


def test_classification_resume_continues_exactly(tmp_path):
    base = dict(task="brackets", n_train=300, n_test=50, eval_interval=5, d_model=32, dim_feedforward=64,
                num_layers=1, pooling="cls", warmup_iters=2, lr_decay_iters=10)  # one schedule for all runs
    full = C.train(C.ClassifyConfig(max_iters=10, out=str(tmp_path / "a"), **base), progress=False)
    C.train(C.ClassifyConfig(max_iters=5, out=str(tmp_path / "b"), **base), progress=False)
    resumed = C.train(C.ClassifyConfig(out=str(tmp_path / "b"), resume=True), overrides={"max_iters": 10},
                      progress=False)
    assert resumed["step"] == full["step"] == 10
    a, b = full["model"].state_dict(), resumed["model"].state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)


def test_vit_on_digits_beats_chance_and_predicts_from_a_file(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")
    cfg = V.ViTTrainConfig(dataset="digits", max_iters=80, eval_interval=40, out=str(tmp_path / "vit"),
                           num_layers=2)
    r = V.train(cfg, progress=False)
    assert r["accuracy"] > 0.3 and cfg.history[-1]["val"] < cfg.history[0]["val"]
    from sklearn.datasets import load_digits

    np.save(tmp_path / "digit.npy", load_digits().images[0] / 16.0)
    assert main(["vit", "predict", "--out", cfg.out, str(tmp_path / "digit.npy")]) == 0
    label = capsys.readouterr().out.strip().split("\t")[1]
    assert label in [str(i) for i in range(10)]


def test_task_command_line_errors(tmp_path, capsys):
    assert main(["translate", "train", "--corpus", "klingon", "--out", str(tmp_path)]) == 2
    assert "--corpus must be one of" in capsys.readouterr().err
    assert main(["classify", "--out", str(tmp_path)]) == 2
    assert "nothing to predict" in capsys.readouterr().err
    assert main(["vit", "eval", "--out", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("pos\tgood film\nneg terrible\n", encoding="utf-8")
    assert main(["classify", "train", "--data", str(bad), "--out", str(tmp_path / "c")]) == 2
    assert "bad.tsv, line 2" in capsys.readouterr().err


def test_translation_from_a_tsv_file_with_shared_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdef"), rng.integers(2, 6))) for _ in range(120)]
    (tmp_path / "pairs.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    cfg = T.TranslateConfig(data=str(tmp_path / "pairs.tsv"), share_embeddings=True, src_tokenizer="char",
                            max_iters=20, eval_interval=10, d_model=32, dim_feedforward=64, batch_size=16,
                            num_encoder_layers=1, num_decoder_layers=1, out=str(tmp_path / "tr"))
    r = T.train(cfg, progress=False)
    model = r["model"]
    assert model.src_embed is model.tgt_embed and model.generator.weight is model.tgt_embed.weight
    assert r["src_vocab"].itos == r["tgt_vocab"].itos
    distinct = len(set(words))
    assert len(r["test_pairs"]) == round(0.1 * distinct)
    assert not {s for s, _ in r["test_pairs"]} & {s for s, _ in T.load_pairs(cfg)[0]}
    loaded, _, _, _ = T.load(cfg.out)
    assert loaded.generator.weight is loaded.tgt_embed.weight
    with pytest.raises(ValueError, match="same tokenizer on both sides"):
        T.build_vocabs(T.TranslateConfig(share_embeddings=True), [("1", "one")])


@pytest.mark.parametrize("pooling,causal", [("mean", False), ("cls", False), ("last", True), ("mean", True)])
def test_classifier_output_does_not_depend_on_padding(pooling, causal):
    """A text's logits are the same alone and in a batch padded to a longer text (the padding mask, the
    masked mean and the last-real-token pick all ignore the padding)."""
    import minitransformer as mt

    mt.manual_seed(0)
    model = C.TransformerClassifier(C.ClassifierConfig(vocab=10, n_classes=3, d_model=16, nhead=2, num_layers=2,
                                                       dim_feedforward=32, dropout=0.0, max_len=12,
                                                       pooling=pooling, causal=causal)).eval()
    short, long_ = [4, 5, 6], [7, 8, 9, 4, 5, 6, 7]
    alone = model(np.array([short])).numpy()
    batch = model(np.array([short + [0] * 4, long_])).numpy()
    np.testing.assert_allclose(batch[0], alone[0], rtol=1e-5, atol=1e-6)
    if causal:
        # a class token in front would see only itself under the causal mask: refused
        with pytest.raises(ValueError, match="causal"):
            C.TransformerClassifier(C.ClassifierConfig(vocab=10, n_classes=3, pooling="cls", causal=True))
