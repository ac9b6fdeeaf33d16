"""The machine's inventory for ``benchbench devices``: CPU (model, cores, RAM, whether the
RAPL energy counters can be read and why not), NVIDIA GPUs through NVML (name, memory,
driver, power limit, energy counter yes/no, UUID, PCI bus id, whether CUDA may use it
under ``CUDA_VISIBLE_DEVICES``) and Google TPUs (PCI devices and ``/dev/accel*``
nodes). No framework is imported: this is what the hardware and its drivers say.

:func:`inventory` returns plain data; :func:`format_inventory` renders it for a terminal.
"""

from __future__ import annotations

import glob
import os
import platform

import psutil

from benchbench.hardware.environment import cpu_model
from benchbench.measure.sources import Unavailable, rapl
from benchbench.measure.sources import nvml as nvml_source

GOOGLE_PCI_VENDOR = "0x1ae0"
PCI_DEVICES = "/sys/bus/pci/devices"


def cpu_inventory(powercap: str = rapl.POWERCAP) -> dict:
    try:
        packages = rapl.discover(powercap)
        energy = {"readable": True, "packages": [{"zone": p.zone, "name": p.name} for p in packages]}
    except Unavailable as e:
        energy = {"readable": False, "reason": str(e)}
    return {
        "model": cpu_model(),
        "arch": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": psutil.virtual_memory().total,
        "rapl": energy,
    }


def cuda_visibility(gpus: list[dict], env: dict | None = None) -> str | None:
    """Mark each GPU ``cuda_visible`` True / False / None (unknown) as CUDA_VISIBLE_DEVICES
    says, the way CUDA reads it: entries up to the first invalid one; UUIDs (``GPU-…``,
    unique prefixes allowed) match NVML's; indices are CUDA's order, which is NVML's PCI
    order only under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (else fastest first). Returns a note
    when some answer is unknown."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        for g in gpus:
            g["cuda_visible"] = True
        return None
    for g in gpus:
        g["cuda_visible"] = False
    by_pci = sorted(gpus, key=lambda g: (g.get("pci_bus_id") or "").lower())
    pci_order = env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" or len(gpus) <= 1
    note = None
    for entry in (e.strip() for e in value.split(",")):
        if entry.upper().startswith("GPU-"):
            hits = [g for g in gpus if (g.get("uuid") or "").lower().startswith(entry.lower())]
            if len(hits) != 1:
                break
            hits[0]["cuda_visible"] = True
        elif entry.upper().startswith("MIG-"):
            note = "CUDA_VISIBLE_DEVICES names MIG instances: their GPUs are not marked"
            for g in gpus:
                g["cuda_visible"] = None if g["cuda_visible"] is False else g["cuda_visible"]
            break
        elif entry.lstrip("-").isdigit():
            index = int(entry)
            if index < 0 or index >= len(gpus):
                break
            if not pci_order:
                note = ("CUDA_VISIBLE_DEVICES gives indices and CUDA orders GPUs fastest first: which "
                        "GPUs CUDA sees is unknown without CUDA_DEVICE_ORDER=PCI_BUS_ID")  # fmt: skip
                for g in gpus:
                    g["cuda_visible"] = None
                break
            by_pci[index]["cuda_visible"] = True
        else:
            break
    return note


def gpu_inventory(nvml=None, env: dict | None = None) -> dict:
    out = nvml_source.inventory(nvml)
    out["cuda_visible_devices"] = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    note = cuda_visibility(out["gpus"], env)
    if note:
        out["cuda_visibility_note"] = note
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def tpu_inventory(pci_root: str = PCI_DEVICES, dev_root: str = "/dev", env: dict | None = None) -> dict:
    env = os.environ if env is None else env
    chips = []
    for dev in sorted(glob.glob(os.path.join(pci_root, "*"))):
        if _read(os.path.join(dev, "vendor")) == GOOGLE_PCI_VENDOR:
            chips.append({"pci": os.path.basename(dev), "device_id": _read(os.path.join(dev, "device"))})
    nodes = sorted(glob.glob(os.path.join(dev_root, "accel*")))
    out: dict = {"available": bool(chips or nodes), "count": len(chips) or len(nodes),
                 "chips": chips, "accel_nodes": nodes}  # fmt: skip
    for var in ("TPU_ACCELERATOR_TYPE", "TPU_NAME"):
        if env.get(var):
            out[var.lower()] = env[var]
    if not out["available"]:
        out["reason"] = f"no Google TPU PCI device (vendor {GOOGLE_PCI_VENDOR}) and no {dev_root}/accel* node"
    return out


def inventory() -> dict:
    """CPU, GPUs and TPUs of this machine, as plain data (no framework imported)."""
    return {"cpu": cpu_inventory(), "gpu": gpu_inventory(), "tpu": tpu_inventory()}


def _gib(n) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def _yes(flag) -> str:
    return {True: "yes", False: "no"}.get(flag, "unknown")


def format_inventory(inv: dict) -> str:
    """The inventory as a few aligned lines for a terminal."""
    lines = []
    c = inv["cpu"]
    lines.append(f"CPU   {c.get('model') or 'unknown model'} ({c.get('arch')}): {c.get('physical_cores')} cores, "
                 f"{c.get('logical_cores')} threads, {c.get('usable_cores')} usable; "
                 f"RAM {_gib(c.get('ram_bytes'))}")  # fmt: skip
    r = c["rapl"]
    if r.get("readable"):
        lines.append(f"      RAPL energy: readable ({', '.join(p['name'] for p in r['packages'])})")
    else:
        lines.append(f"      RAPL energy: unavailable: {r.get('reason')}")
    g = inv["gpu"]
    if not g.get("available"):
        lines.append(f"GPU   unavailable: {g.get('reason')}")
    else:
        cvd = g.get("cuda_visible_devices")
        lines.append(f"GPU   driver {g.get('driver')}, CUDA {g.get('cuda_driver')}; "
                     f"CUDA_VISIBLE_DEVICES={cvd if cvd is not None else '(unset)'}")  # fmt: skip
        for gpu in g["gpus"]:
            limit = gpu.get("power_limit_w")
            lines.append(
                f"      [{gpu['nvml_index']}] {gpu.get('name')}: {_gib(gpu.get('memory_bytes'))}, "
                f"power limit {f'{limit:.0f} W' if limit is not None else 'unknown'}, "
                f"energy counter {_yes(gpu.get('energy_counter'))}, CUDA visible {_yes(gpu.get('cuda_visible'))}"
            )
            lines.append(f"          uuid {gpu.get('uuid')}  pci {gpu.get('pci_bus_id')}")
        if g.get("cuda_visibility_note"):
            lines.append(f"      note: {g['cuda_visibility_note']}")
    t = inv["tpu"]
    if not t.get("available"):
        lines.append(f"TPU   unavailable: {t.get('reason')}")
    else:
        kind = f" ({t['tpu_accelerator_type']})" if t.get("tpu_accelerator_type") else ""
        where = ", ".join([ch["pci"] for ch in t["chips"]] or t["accel_nodes"])
        lines.append(f"TPU   {t['count']} chip(s){kind}: {where}")
    return "\n".join(lines)
