"""Compression and precision variants, per backend (torch_variants, tf_variants), and
the framework-free fidelity maths they share (fidelity). The table of names, devices and
modes lives in :mod:`benchbench.registry` (``VARIANTS``, ``variant_support``)."""
