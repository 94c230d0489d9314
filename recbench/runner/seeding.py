"""Seeding the global random number generators before a model is built and trained."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch's (every device's)
    generators with ``seed``, so that a model built and trained next is reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
