"""Train every model in core.zoo.SPECS and write it to assets/zoo/ (float16 weights).

    python scripts/build_zoo.py            # only the missing ones
    python scripts/build_zoo.py --force    # retrain all

Deterministic: each model uses seed 0, so a rebuild gives the same numbers on the same
machine and library versions. About 3 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core import zoo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--force", action="store_true", help="retrain models that already exist")
    ap.add_argument("--dataset", choices=sorted(zoo.RECIPES), help="only this dataset")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo.ASSET_DIR.mkdir(parents=True, exist_ok=True)
    for spec in zoo.SPECS:
        if args.dataset and spec.dataset != args.dataset:
            continue
        path = zoo.ASSET_DIR / spec.filename
        if path.exists() and not args.force:
            continue
        t0 = time.perf_counter()
        ev = zoo.train_spec(spec, path)
        print(f"{spec.filename:40s} {time.perf_counter() - t0:6.1f}s  -ELBO {ev['neg_elbo']:8.2f}  "
              f"recon {ev['recon']:8.2f}  KL {ev['kl']:6.2f}  active {ev['active_units']}", flush=True)


if __name__ == "__main__":
    main()
