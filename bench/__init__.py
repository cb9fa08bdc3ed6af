"""neuronbench engine: core types, extraction and cache, scorers, the run loop and the CLI."""

__version__ = "0.1.0"
