"""Near-duplicate detection with MinHash and locality-sensitive hashing.

Support logs repeat themselves (the same macro answer to the same question, a thread exported twice);
training on a hundred copies teaches the model to parrot one reply. Conversations whose word-shingle
Jaccard similarity reaches the threshold are duplicates; the first one seen is kept. MinHash + LSH keeps
this linear in the number of conversations, and every candidate pair is confirmed on exact Jaccard.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_PERMUTATIONS = 64
_BANDS = 16  # 16 bands of 4 rows: pairs above ~0.5 similarity become candidates
_PRIME = (1 << 61) - 1
_PLACEHOLDER = re.compile(r"\[([A-Z_]+?)_\d+\]")


def normalize(text: str) -> str:
    """Lower-case, placeholders without numbers, digits as 0: "[NAME_2] order 12" ~ "[NAME_1] order 9"."""
    text = _PLACEHOLDER.sub(r"\1", text.lower())
    return " ".join(re.sub(r"\d", "0", text).split())


def shingles(text: str, size: int = 3) -> set[str]:
    words = normalize(text).split()
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


class NearDuplicateFilter:
    def __init__(self, threshold: float = 0.8, seed: int = 7) -> None:
        self.threshold = threshold
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, _PRIME, size=_PERMUTATIONS, dtype=np.uint64)
        self._b = rng.integers(0, _PRIME, size=_PERMUTATIONS, dtype=np.uint64)
        self._buckets: dict[tuple[int, bytes], list[int]] = {}
        self._kept: list[set[str]] = []

    def _signature(self, items: set[str]) -> np.ndarray:
        hashes = np.fromiter(
            (zlib.crc32(s.encode("utf-8")) for s in items), dtype=np.uint64, count=len(items)
        )
        # (a*x + b) mod p for every permutation at once; uint64 wraps, which still mixes well enough here.
        products = (np.outer(hashes, self._a) + self._b) % np.uint64(_PRIME)
        return products.min(axis=0)

    def is_duplicate(self, text: str) -> bool:
        """True if ``text`` nearly repeats one already kept; otherwise remember it and return False."""
        items = shingles(text)
        if not items:
            return False
        signature = self._signature(items)
        rows = _PERMUTATIONS // _BANDS
        keys = [(band, signature[band * rows : (band + 1) * rows].tobytes()) for band in range(_BANDS)]
        candidates = {index for key in keys for index in self._buckets.get(key, ())}
        for index in candidates:
            kept = self._kept[index]
            if len(items & kept) / len(items | kept) >= self.threshold:
                return True
        index = len(self._kept)
        self._kept.append(items)
        for key in keys:
            self._buckets.setdefault(key, []).append(index)
        return False
