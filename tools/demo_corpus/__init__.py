"""Helpers of tools/make_demo_corpus.py: Debian sources, TTS, MIDI music, event cutting,
captions and the seeded clip plan. Kept outside `strongaudio_jax` because only the corpus
builder (and its test) needs them, together with Debian packages the library must not require.
"""
