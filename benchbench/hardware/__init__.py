"""Machines: this machine's inventory (:mod:`inventory`, ``benchbench devices``), the
environment a run happened on (:mod:`environment`, ``environment.json``), and the catalogue
of devices with their peaks and prices (:mod:`catalogue`, from ``devices.yaml``)."""
