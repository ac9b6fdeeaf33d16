"""CPU package energy from Intel RAPL under ``/sys/class/powercap`` (AMD Zen CPUs register
the same ``intel-rapl`` powercap zones).

Only *package* domains are read: ``intel-rapl:N`` whose ``name`` is ``package-N``. Their
subdomains (``intel-rapl:N:M``: core, uncore, dram) are parts of the package (or beside
it), so adding them would count energy twice; ``psys`` (the whole platform) and the
``intel-rapl-mmio:N`` duplicates of the package counters are left out for the same
reason. Each package's ``energy_uj`` counts micro-joules from 0 up to its
``max_energy_range_uj`` and starts again at 0: it is read at every tick and the
differences are unwrapped with that range (one wrap between ticks at most: the smallest
range, ~4 kJ, takes a 250 W package over 15 s to wrap).

Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694, the
"PLATYPUS" power side channel); then the source is unavailable and says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from benchbench.measure.sources import Channel, Unavailable

POWERCAP = "/sys/class/powercap"
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")  # fullmatch: intel-rapl:0:0 and intel-rapl-mmio:0 do not

Reader = Callable[[str], bytes]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class Package:
    zone: str  # "intel-rapl:0"
    name: str  # "package-0"
    energy_path: str
    max_energy_range_uj: int


def discover(root: str = POWERCAP, read: Reader = _read) -> list[Package]:
    """The package domains under ``root``, each with its counter read once to prove it
    readable; raises :class:`Unavailable` with the reason when there is none to use."""
    if not os.path.isdir(root):
        raise Unavailable(
            f"no RAPL: {root} does not exist (no powercap driver, or a virtual machine "
            "that does not expose the CPU's energy counters)"
        )
    zones = sorted((z for z in os.listdir(root) if _PACKAGE_ZONE.fullmatch(z)), key=lambda z: int(z.split(":")[1]))
    packages: list[Package] = []
    for zone in zones:
        base = os.path.join(root, zone)
        try:
            name = read(os.path.join(base, "name")).decode().strip()
        except OSError:
            continue
        if not name.startswith("package"):
            continue  # psys: the platform, which already contains the packages
        energy_path = os.path.join(base, "energy_uj")
        try:
            int(read(energy_path))
        except PermissionError:
            raise Unavailable(
                f"RAPL energy counters are readable by root only ({energy_path}: permission denied; "
                "Linux restricts energy_uj since 5.10, CVE-2020-8694): run as root, or make "
                "energy_uj readable (chmod o+r) on a machine you trust"
            ) from None
        except (OSError, ValueError) as e:
            raise Unavailable(f"cannot read {energy_path}: {getattr(e, 'strerror', None) or e}") from None
        try:
            max_range = int(read(os.path.join(base, "max_energy_range_uj")))
        except (OSError, ValueError) as e:
            raise Unavailable(
                f"cannot read {base}/max_energy_range_uj ({getattr(e, 'strerror', None) or e}): "
                "counter wrap could not be handled"
            ) from None
        packages.append(Package(zone, name, energy_path, max_range))
    if not packages:
        raise Unavailable(f"no RAPL package domain under {root} (no intel-rapl:N zone named package-N)")
    return packages


class RaplSource:
    """Every CPU package's energy counter, one channel per package."""

    name = "rapl"
    domain = "cpu"
    energy_label = "rapl"
    power_label = None
    counter_period_s = None  # updated about every millisecond: finer than any tick

    def __init__(self, packages: list[Package], read: Reader = _read):
        self.packages = packages
        self._paths = [p.energy_path for p in packages]
        self._read = read
        self.channels = tuple(
            Channel(f"{p.name}.energy_j", kind="counter", scale=1e-6, wrap=p.max_energy_range_uj,
                    role="energy", rate=f"{p.name}.power_w")
            for p in packages
        )  # fmt: skip

    def poll(self) -> tuple:
        read = self._read
        return tuple(int(read(path)) for path in self._paths)

    def info(self) -> dict:
        return {
            "packages": [
                {"zone": p.zone, "name": p.name, "max_energy_range_uj": p.max_energy_range_uj} for p in self.packages
            ],
            "note": "whole CPU package(s): every process on them, not only the worker; "
            "package domains only (core/uncore/dram subdomains are inside or beside them, not added)",
        }

    def close(self) -> None:
        pass


def open_rapl(root: str = POWERCAP, read: Reader = _read) -> RaplSource:
    return RaplSource(discover(root, read), read)
