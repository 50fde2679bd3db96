"""Inference jobs: language-model generation (generate.py) and the Hugging Face importer
(import_hf.py)."""
