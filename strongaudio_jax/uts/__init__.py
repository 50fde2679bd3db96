"""Unified Tag System: one tag vocabulary over speech, music and sound, learned from captions.

Flow (each step is a `strongaudio uts` subcommand, see `uts/cli.py` and docs/uts.md):
  tagging.py + {rules_tagger, http_tagger, lm_tagger}.py   captions -> 5-10 tags per clip
  llm_reply.py      the LLM prompt and strict parsing of replies
  normalize.py      one spelling per tag (case, plural, British/American, synonyms)
  vocab.py          df * log((N+1)/(df+1)) scoring, nested top-K, label_K.json files
  filter.py         clips' tags mapped onto a vocabulary; clips left with none dropped
  bridge.py         AudioSet-527 classes -> UTS tags
  report.py         markdown report with plots
  evaluate.py       precision / recall of extracted tags against reference tags
"""
