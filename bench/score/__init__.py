"""Scorer-like computations on labels and activations, below methods/ and tasks/ (shared/docs/house.md)."""
