"""Streaming statistics whose memory does not depend on the number of rows.

- :class:`Histogram`: fixed bin edges chosen before the data is seen, plus under/overflow
  and missing counts, and exact running moments (count, mean, std, min, max);
- :class:`CappedCounter`: counts of strings with at most `cap` distinct keys (the rest are
  pooled under "(other)"), for free-text failure reasons;
- :class:`BottomK`: the k items with the smallest keys; with a hash of the image id as the
  key this is a uniform random sample that is reproducible, independent of the reading order
  and the same across two label directories (so galleries show the same images);
- :func:`sample_key` gives that hash; :func:`reason_key` pools alike failure messages.

Every class has ``to_dict()`` for summary.json.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Moments:
    """Exact count, mean, variance (Chan's parallel update), min and max of finite values."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return
        n_b, mean_b = v.size, float(v.mean())
        m2_b = float(((v - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))

    def to_dict(self) -> dict[str, Any]:
        if self.n == 0:
            return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
        return {"count": self.n, "mean": self.mean, "std": math.sqrt(self.m2 / self.n),
                "min": self.min, "max": self.max}


@dataclass
class Histogram:
    """Counts over fixed bins [edges[i], edges[i+1]); the last bin also takes edges[-1].

    Values below edges[0] go to `underflow`, above edges[-1] to `overflow`, NaN/None to
    `missing`; all finite values feed `moments`, so means stay exact when bins clip.
    """

    edges: np.ndarray
    counts: np.ndarray = field(init=False)
    underflow: int = 0
    overflow: int = 0
    missing: int = 0
    moments: Moments = field(default_factory=Moments)
    integer: bool = False  # bins are whole numbers (labels print without decimals)

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if self.edges.ndim != 1 or len(self.edges) < 2 or np.any(np.diff(self.edges) <= 0):
            raise ValueError("histogram edges must be a strictly increasing 1-D array")
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)

    @classmethod
    def linear(cls, lo: float, hi: float, bins: int) -> Histogram:
        return cls(np.linspace(lo, hi, bins + 1))

    @classmethod
    def log(cls, lo: float, hi: float, bins: int) -> Histogram:
        return cls(np.geomspace(lo, hi, bins + 1))

    @classmethod
    def integers(cls, hi: int) -> Histogram:
        """One bin per whole number 0..hi-1 (bin i is [i, i+1)); hi and more overflow."""
        return cls(np.arange(hi + 1, dtype=np.float64), integer=True)

    def update(self, values: Any) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        nan = np.isnan(v)
        self.missing += int(nan.sum())
        v = v[~nan]
        self.moments.update(v)
        lo, hi = self.edges[0], self.edges[-1]
        self.underflow += int((v < lo).sum())
        self.overflow += int((v > hi).sum())
        inside = v[(v >= lo) & (v <= hi)]
        idx = np.searchsorted(self.edges, inside, side="right") - 1
        idx = np.minimum(idx, len(self.counts) - 1)  # v == hi goes to the last bin
        self.counts += np.bincount(idx, minlength=len(self.counts))

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.underflow + self.overflow

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": [float(e) for e in self.edges], "counts": [int(c) for c in self.counts],
            "underflow": self.underflow, "overflow": self.overflow, "missing": self.missing,
            **self.moments.to_dict(),
        }


class CappedCounter:
    """A Counter of strings holding at most `cap` distinct keys; later new keys pool as OTHER."""

    OTHER = "(other)"

    def __init__(self, cap: int = 50):
        self.cap = cap
        self.counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        if key not in self.counts and len(self.counts) >= self.cap:
            key = self.OTHER
        self.counts[key] += n

    def most_common(self, n: int | None = None) -> list[tuple[str, int]]:
        return self.counts.most_common(n)

    def to_dict(self) -> dict[str, int]:
        return dict(self.counts.most_common())


_NUMBER = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATHLIKE = re.compile(r"\S*/\S+")


def reason_key(error: str | None) -> str:
    """A failure reason with paths, quoted names and numbers blanked, so alike errors pool."""
    text = (error or "unknown error").strip().splitlines()[0] if error else "unknown error"
    text = _PATHLIKE.sub("<path>", text)
    text = _QUOTED.sub("<name>", text)
    return _NUMBER.sub("N", text)[:200]


def sample_key(image_id: str, seed: int = 0) -> int:
    """A 64-bit hash of (seed, image_id): the random key of bottom-k sampling."""
    digest = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class BottomK:
    """The k items with the smallest keys seen so far (a max-heap of size k).

    `push(key, tiebreak, item)`: ties on key are broken by `tiebreak` (e.g. the image id),
    so the result does not depend on the order items arrive in.
    """

    def __init__(self, k: int):
        self.k = k
        self._heap: list[tuple[Any, ...]] = []  # (-key, reversed tiebreak, -seq, item)
        self._seq = 0

    def would_accept(self, key: float) -> bool:
        return self.k > 0 and (len(self._heap) < self.k or -self._heap[0][0] >= key)

    def push(self, key: float, tiebreak: str, item: Any) -> None:
        if self.k <= 0:
            return
        self._seq += 1
        entry = (-key, _Reversed(tiebreak), -self._seq, item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[tuple[float, Any]]:
        """(key, item) pairs, smallest key first."""
        return [(-e[0], e[3]) for e in sorted(self._heap, key=lambda e: e[:3], reverse=True)]

    def __len__(self) -> int:
        return len(self._heap)


@functools.total_ordering
class _Reversed:
    """Wraps a string so that heap order on it is reversed (for the max-heap tiebreak)."""

    __slots__ = ("s",)

    def __init__(self, s: str):
        self.s = s

    def __lt__(self, other: _Reversed) -> bool:
        return self.s > other.s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.s == other.s
