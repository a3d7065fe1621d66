"""Text: tokenizers (char, byte-level BPE, GPT-2's) and BERT's WordPiece."""
