"""Shared models: the zoo's pretrained models and their active-unit counts (cached for every session),
and torch imported with the process settings (``core.settings``)."""
from __future__ import annotations

import streamlit as st

from core.data import load_dataset

# ---- shared models -------------------------------------------------------------------------


def configure_torch():
    """Import torch with the process settings applied (``core.settings.import_torch``: one
    intra-op thread per process, GC frozen after the heavy imports) and return it."""
    from core import settings
    return settings.import_torch()


@st.cache_resource(show_spinner="Loading the pretrained model…", max_entries=64)
def pretrained(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = ""):
    """A read-only model from ``core.zoo`` (a ``zoo.Pretrained``), shared by all sessions."""
    configure_torch()
    from core import zoo
    return zoo.pretrained(dataset, kind, beta, latent_dim, variant)


@st.cache_resource(show_spinner=False, max_entries=64)
def activity(dataset: str, kind: str, beta: float, latent_dim: int, variant: str = ""):
    """``core.units.heldout_activity`` of a zoo model on its held-out split: the one active-unit
    count (Burda et al., 2016) that every page shows for that model."""
    from core import units
    return units.heldout_activity(pretrained(dataset, kind, beta, latent_dim, variant), load_dataset(dataset))
