"""Data curation: UTS coverage, near-duplicates and leakage, caption-audio consistency
(`strongaudio curate ...`; docs/curation.md)."""
