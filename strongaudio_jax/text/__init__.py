"""Text side of the stack: WordPiece tokenizer, BERT-style Flax encoder, MiniLM weights."""
