"""Neuron-ranking methods, one module per family, all behind `Method.rank(X, y) -> ranking`."""
