"""Print the README's performance table: every benchmark in bench/, and the machine it ran on.

    python -m bench.run
"""
from __future__ import annotations

import importlib
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODULES = ["bench.bench_core", "bench.bench_pages", "bench.bench_tsne", "bench.bench_interaction", "bench.bench_training",
           "bench.bench_load"]


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
            f"torch {torch.__version__}, no GPU" if not torch.cuda.is_available() else "GPU present")


def main() -> None:
    print(f"Machine: {machine()}\n")
    print("| measure | result | budget |")
    print("| --- | --- | --- |")
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        if not hasattr(mod, "rows"):
            continue
        for r in mod.rows():
            print("| " + " | ".join(r) + " |", flush=True)


if __name__ == "__main__":
    main()
