"""Re-evaluate every shipped zoo model on its held-out split and store the result in its file.

Use after a change to ``core.training.evaluate_model`` (for example the active-unit definition):
the weights, history and config are kept as they are; only ``extra["evaluation"]`` is recomputed,
exactly as ``core.zoo.train_spec`` computes it. Run: ``python -m scripts.refresh_zoo_evaluation``.
"""
from __future__ import annotations

import os

import torch

from core.checkpoints import load_checkpoint
from core.data import load_dataset
from core.training import evaluate_model
from core.zoo import ASSET_DIR


def main() -> None:
    for path in sorted(ASSET_DIR.glob("*.pt")):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        extra = payload["extra"]
        spec, tcfg = extra["spec"], extra["train_config"]
        model = load_checkpoint(path, device="cpu").model
        x_val = load_dataset(spec["dataset"]).x[extra["val_idx"]]
        ev = evaluate_model(model, x_val, float(spec["beta"]), payload["config"]["likelihood"], seed=int(tcfg["seed"]))
        ev["beta"] = spec["beta"]
        old = extra["evaluation"].get("active_units")
        extra["evaluation"] = ev
        extra["history"].pop("active_units", None)  # per-step counts used the old (per-batch KL) definition
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        print(f"{path.name:40s} active units {old} -> {ev['active_units']}  -ELBO {ev['neg_elbo']:.2f}")


if __name__ == "__main__":
    main()
