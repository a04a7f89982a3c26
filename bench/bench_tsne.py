"""Benchmark: ``core.embed.embed_2d(..., "tsne")`` vs ``sklearn.manifold.TSNE``.

Budget (docs/DESIGN.md, "Performance budgets"): t-SNE of 5,000 latents in at most
0.5x the time of ``sklearn.manifold.TSNE`` on the same input, trustworthiness (k=10)
of at least 0.95, and a first map within 1 s.

The input stands in for a 16-D latent space without training a model: the
``assets/mnist_5k.npz`` pixels projected by PCA to 16 dimensions, or, if that file
is missing, scikit-learn's digits tiled to n rows (with tiny jitter so no two rows
are identical) and projected the same way.

Run:  python -m bench.bench_tsne [--n 5000] [--no-sklearn]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ASSET = Path(__file__).resolve().parent.parent / "assets" / "mnist_5k.npz"
LATENT_DIM = 16

MARKDOWN_HEADER = (
    "| benchmark | N | ours (s) | sklearn (s) | ratio | trustworthiness k=10 | "
    "first layout (s) | first optimised layout (s) |"
)
MARKDOWN_SEPARATOR = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"


def bench_input(n: int = 5000, seed: int = 0) -> tuple[np.ndarray, str]:
    """The (n, 16) float32 benchmark input and a description of where it came from."""
    from sklearn.decomposition import PCA

    if ASSET.exists():
        with np.load(ASSET) as data:
            pixels = data["x"].reshape(len(data["x"]), -1).astype(np.float32) / 255.0
        source = "mnist-5k pixels"
    else:
        from sklearn.datasets import load_digits

        pixels = load_digits().data.astype(np.float32) / 16.0
        source = "sklearn digits (tiled)"
    if len(pixels) < n:
        reps = -(-n // len(pixels))
        pixels = np.tile(pixels, (reps, 1))
        pixels = pixels + np.random.default_rng(seed).normal(0, 1e-3, pixels.shape).astype(np.float32)
    pixels = pixels[:n]
    latents = PCA(n_components=LATENT_DIM, random_state=seed).fit_transform(pixels)
    return latents.astype(np.float32), f"{source} -> PCA {LATENT_DIM}-D"


def bench_tsne(n: int = 5000, run_sklearn: bool = True, seed: int = 0) -> dict:
    """Time our t-SNE against scikit-learn's on the same (n, 16) input.

    Returns a dict with ``n``, ``source``, ``ours_s``, ``sklearn_s`` (None if skipped),
    ``ratio`` (ours / sklearn), ``trustworthiness`` (ours, k=10),
    ``sklearn_trustworthiness``, ``first_layout_s`` (time to the callback's first layout,
    the initial map), ``first_optimised_layout_s`` (time to the first layout after
    gradient steps), ``callbacks`` (how many layouts were delivered) and ``meets_budget``.
    """
    from core.embed import default_n_jobs, embed_2d, trustworthiness

    latents, source = bench_input(n, seed)
    threads = default_n_jobs()  # what embed_2d will use now (the idle cores)
    firsts: dict[str, float] = {}
    calls = [0]

    def on_layout(iteration: int, layout: np.ndarray) -> None:
        now = time.perf_counter() - start
        calls[0] += 1
        firsts.setdefault("first", now)
        if iteration > 0:
            firsts.setdefault("first_optimised", now)

    start = time.perf_counter()
    ours = embed_2d(latents, "tsne", seed=seed, callback=on_layout)
    ours_s = time.perf_counter() - start
    tw = trustworthiness(latents, ours, k=10)

    sklearn_s = sk_tw = ratio = None
    if run_sklearn:
        from sklearn.manifold import TSNE

        start = time.perf_counter()
        theirs = TSNE(n_components=2, init="pca", random_state=seed).fit_transform(latents)
        sklearn_s = time.perf_counter() - start
        sk_tw = trustworthiness(latents, theirs, k=10)
        ratio = ours_s / sklearn_s

    result = {
        "n": n,
        "source": source,
        "ours_s": ours_s,
        "sklearn_s": sklearn_s,
        "ratio": ratio,
        "trustworthiness": tw,
        "sklearn_trustworthiness": sk_tw,
        "first_layout_s": firsts.get("first"),
        "first_optimised_layout_s": firsts.get("first_optimised"),
        "callbacks": calls[0],
        "threads": threads,
    }
    result["meets_budget"] = bool(
        ratio is not None
        and ratio <= 0.5
        and tw >= 0.95
        and result["first_layout_s"] is not None
        and result["first_layout_s"] <= 1.0
    )
    return result


def markdown_row(r: dict) -> str:
    """One row for :data:`MARKDOWN_HEADER`."""

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    return (
        f"| t-SNE ({r['source']}) | {r['n']} | {fmt(r['ours_s'], '.1f')} | "
        f"{fmt(r['sklearn_s'], '.1f')} | {fmt(r['ratio'], '.2f')}{'' if r['ratio'] is None else 'x'} | "
        f"{fmt(r['trustworthiness'], '.3f')} | {fmt(r['first_layout_s'], '.2f')} | "
        f"{fmt(r['first_optimised_layout_s'], '.2f')} |"
    )


def rows(result: dict | None = None) -> list[tuple[str, str, str]]:
    """(measure, result, budget) rows for ``bench/run.py``'s README table."""
    r = bench_tsne() if result is None else result
    n = f"{r['n']:,}"
    if r["ratio"] is None:
        speed = f"{r['ours_s']:.1f} s (sklearn not run)"
    else:
        speed = (f"{r['ours_s']:.1f} s vs sklearn {r['sklearn_s']:.1f} s = {r['ratio']:.2f}x "
                 f"(openTSNE on {r.get('threads', 1)} thread(s), sklearn on all cores)")
    return [
        (f"t-SNE of {n} latents: time vs sklearn.manifold.TSNE", speed, "<= 0.5x"),
        (f"t-SNE of {n} latents: trustworthiness (k=10)", f"{r['trustworthiness']:.3f}", ">= 0.95"),
        (
            f"t-SNE of {n} latents: first map shown",
            f"{r['first_layout_s']:.2f} s (first optimised layout {r['first_optimised_layout_s']:.2f} s)",
            "<= 1 s",
        ),
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="number of points (default 5000)")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the sklearn reference run")
    args = parser.parse_args(argv)
    result = bench_tsne(args.n, run_sklearn=not args.no_sklearn)
    print(MARKDOWN_HEADER)
    print(MARKDOWN_SEPARATOR)
    print(markdown_row(result))
    return result


if __name__ == "__main__":
    main()
