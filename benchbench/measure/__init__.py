"""Measurement: the timing loop (timing.py) and statistics over its samples (stats.py)."""
