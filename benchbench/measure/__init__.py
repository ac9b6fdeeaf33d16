"""Measurement: the timing loop (:mod:`timing`), statistics over its samples (:mod:`stats`),
telemetry and energy over the timed window (:mod:`telemetry`, :mod:`sources`), and a case's
worker processes combined into its one record (:mod:`processes`, :mod:`combine`). No
framework: the worker hands it a step."""
