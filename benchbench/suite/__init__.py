"""Suites: strict validation with file:line
messages and matrix expansion (:mod:`schema`), a suite's own device catalogue files
(:mod:`catalogue`)."""
