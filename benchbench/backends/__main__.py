"""``python -m benchbench.backends FRAMEWORK``: print the backend's probe as JSON (versions,
devices, model names). :mod:`benchbench.probe` runs this in a subprocess so that its caller,
the parent side, never imports a framework."""

from __future__ import annotations

import json
import sys

from benchbench import backends


def main(argv: list[str]) -> int:
    (framework,) = argv
    json.dump(backends.get(framework).probe(), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
