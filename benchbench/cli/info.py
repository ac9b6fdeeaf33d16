"""What a suite and this machine offer: ``validate``, ``list``, ``schema``, ``devices``."""

from __future__ import annotations

import json
import sys

from benchbench.cli.common import err as _err
from benchbench.errors import EXIT_OK, UserError


def add_parsers(sub) -> None:
    v = sub.add_parser("validate", help="check a suite and print its case count")
    v.add_argument("suite")

    ls = sub.add_parser("list", help="list models, variants, devices, modes or frameworks")
    ls.add_argument("what", choices=["models", "variants", "devices", "modes", "frameworks"])
    ls.add_argument("--framework", default="torch")
    ls.add_argument("--all", action="store_true", help="models: list every timm model too")

    sub.add_parser("schema", help="print the JSON Schema of the suite format")
    d = sub.add_parser("devices", help="CPU (RAPL readable?), GPUs (NVML) and TPUs of this machine")
    d.add_argument("--json", action="store_true", help="print the inventory as JSON")


def cmd_validate(args) -> int:
    from benchbench.suite.schema import load_suite

    suite = load_suite(args.suite)
    print(f"{args.suite}: ok, suite {suite.name!r}, {len(suite.cases)} cases")
    return EXIT_OK


def cmd_devices(args) -> int:
    from benchbench.hardware import inventory as devices

    inv = devices.inventory()
    print(json.dumps(inv, indent=2) if args.json else devices.format_inventory(inv))
    return EXIT_OK


def cmd_schema(args) -> int:
    from benchbench.suite.schema import suite_json_schema

    json.dump(suite_json_schema(), sys.stdout, indent=2)
    print()
    return EXIT_OK


def cmd_list(args) -> int:
    from benchbench import probe, registry

    if args.what == "frameworks":
        for name, desc in registry.FRAMEWORKS.items():
            err = probe.probe_error(name)
            print(f"{name:12} {desc}" + (f"  [unavailable: {err}]" if err else ""))
    elif args.what == "modes":
        for name, desc in registry.MODES.items():
            print(f"{name:12} {desc}")
    elif args.what == "variants":
        from benchbench.variants.listing import support_lines

        print("\n".join(support_lines()))
    elif args.what == "devices":
        info = probe.probe(args.framework)
        if info is None:
            raise UserError(probe.probe_error(args.framework))
        for kind, dev in info["devices"].items():
            state = "available" if dev.get("available") else f"unavailable: {dev.get('reason')}"
            extra = ""
            if kind == "cpu":
                extra = f" ({dev.get('name')})"
            for gpu in dev.get("gpus", []):
                mem = gpu.get("memory_bytes")
                size = f"{mem / 2**30:.1f} GiB" if mem else "memory n/a"
                extra += f"\n  cuda:{gpu.get('index')} {gpu.get('name')} {size} uuid={gpu.get('uuid')}"
            print(f"{kind:6} {state}{extra}")
    else:
        for m in registry.SEED_MODELS.values():
            print(f"{m.name:12} seed   input {'×'.join(map(str, m.input_shape))}: {m.description}")
        for t in registry.TRANSFORMER_MODELS.values():  # token models: seq_len, or prompt_len + new_tokens
            print(f"{t.name:12} {t.kind}: {t.description}")
        info = probe.probe(args.framework)
        if info is None:
            _err(f"zoo models unavailable: {probe.probe_error(args.framework)}")
        else:
            source = info.get("model_source", "torchvision")
            aliases = info.get("aliases") or {}
            for name in info["models"]:
                print(f"{name:12} {source}")
            for alias, target in sorted(aliases.items()):
                print(f"{alias:12} alias of {target}")
            timm = info.get("timm_models")
            if timm is None:
                print(f"timm:NAME    {info.get('timm_reason') or 'timm is not installed'}")
            elif args.all:
                for name in timm:
                    print(f"timm:{name}")
            else:
                print(f"timm:NAME    {len(timm)} timm models, e.g. timm:{timm[0]} (list them with --all)")
        kind = "a keras.Model" if args.framework == "tensorflow" else "an nn.Module"
        print(f"pkg.module:callable   your own function returning {kind} (input shape from the suite)")
    return EXIT_OK
