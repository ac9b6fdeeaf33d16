"""benchbench: honest benchmarks of deep-learning vision models."""

__version__ = "0.1.0"
