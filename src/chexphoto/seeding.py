"""Per-item random streams that do not depend on workers, order or machine.

Every random draw in the package comes from a generator made by :func:`derive_rng` from a key
(seed, what is being done, which item). NumPy's ``SeedSequence`` + ``PCG64`` give the same
stream on every platform, so the same inputs and seed give the same bytes with 1 or N workers,
locally or on a cluster.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


def key_entropy(*parts: object) -> list[int]:
    """Stable 256-bit entropy (as 32-bit words) from JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    digest = hashlib.sha256(blob).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]


def derive_rng(*parts: object) -> np.random.Generator:
    """A ``numpy.random.Generator`` determined only by ``parts`` (e.g. seed, chain, path)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key_entropy(*parts))))
