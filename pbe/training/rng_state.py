"""Every random state a training step depends on (the module's draw generator, torch, Python, NumPy, CUDA), saved
in each checkpoint and restored on resume, so that a resumed run continues exactly."""

from __future__ import annotations

import random

import numpy as np
import torch


def capture(generator: torch.Generator) -> dict:
    state = {"draws": generator.get_state(), "torch": torch.get_rng_state(), "python": random.getstate()}
    np_state = np.random.get_state()
    state["numpy"] = (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(generator: torch.Generator, state: dict) -> None:
    generator.set_state(state["draws"].to(torch.uint8).cpu())
    torch.set_rng_state(state["torch"].cpu())
    version, ints, gauss = state["python"]
    random.setstate((version, tuple(ints), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
