"""The commands, one module per command group: :mod:`main` (the parser, ``run``, ``validate``,
``list``, ``report``, ``schema``, ``devices``), :mod:`history` (``store``, ``compare``,
``history``, ``check``, ``ab``), :mod:`profile`, :mod:`data`; :mod:`display` renders
tables for the terminal. Thin: parse arguments, call the library, print."""

from benchbench.cli.main import main

__all__ = ["main"]
