"""Executors run one case in isolation and return its record. ``local`` is the default."""
