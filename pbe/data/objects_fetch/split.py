"""The held-out split: decided by a salted SHA-256 of a key, never by the order of a run or by random state.

- Objects: a code point is held out when its hash falls in the first ``heldout_fraction`` of the hash range. That
  depends on the code point alone, so it holds in every style and never changes when other emoji are added.
- Backgrounds: there are few, so a fraction of the hash range could hold out none; instead the
  ``ceil(heldout_fraction * n)`` photos with the smallest hashes are held out (adding photos can move a photo only
  at the boundary).
"""

from __future__ import annotations

import hashlib
import math

from pbe.data.objects_fetch.config import SplitConfig

TRAIN, HELDOUT = "train", "heldout"


def hash_position(key: str, split: SplitConfig) -> float:
    """Where ``key`` falls in [0, 1), uniformly, for this split's salt."""
    digest = hashlib.sha256(f"{split.salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def codepoint_split(key: str, split: SplitConfig) -> str:
    return HELDOUT if hash_position(key, split) < split.heldout_fraction else TRAIN


def ranked_split(keys: list[str], split: SplitConfig) -> dict[str, str]:
    """{key: split} holding out exactly ``ceil(heldout_fraction * len(keys))`` keys, those with the smallest hashes."""
    count = math.ceil(split.heldout_fraction * len(keys))
    ranked = sorted(set(keys), key=lambda key: hash_position(key, split))
    return {key: HELDOUT if rank < count else TRAIN for rank, key in enumerate(ranked)}
