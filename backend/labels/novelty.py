"""How new a document's sender is to a dataset: its head (the sender block, the first lines) against
the heads of the dataset's training documents, with no model.

A head is the first `HEAD_LINES` non-empty lines (at most `HEAD_CHARS` characters), lower-cased, digits
read as 0 (two invoices of one sender differ in their numbers and dates, not their letterhead) and
whitespace collapsed. Two heads are alike by the Jaccard similarity of their sets of character
`SHINGLE`-grams, estimated by MinHash over `PERMUTATIONS` hash functions (seeded, so the same heads
always give the same numbers; the estimate's standard error is at most 0.5 / sqrt(PERMUTATIONS),
0.044). A document's novelty is 1 minus its similarity to the nearest training head: 0 for a sender
the dataset already holds verbatim, 1 for one that shares no shingle with any.

Cheap: heads are hashed with CRC-32 and signed in numpy; comparing 1,000 documents with 1,000 training
heads is a few hundred thousand vector comparisons (benchmarks/suggest_speed.py measures it).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HEAD_LINES = 5
HEAD_CHARS = 400
SHINGLE = 4
PERMUTATIONS = 128
_PRIME = (1 << 61) - 1  # a·x + b stays below 2**64: a < 2**31, x < 2**32, b < 2**61
_rng = np.random.default_rng(20261205)
_A = _rng.integers(1, 1 << 31, size=PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, 1 << 61, size=PERMUTATIONS, dtype=np.uint64)
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def head(text: str) -> str:
    """The sender block of a document's text, normalized (see the module docstring)."""
    lines: list[str] = []
    for line in text.splitlines():
        line = _SPACE.sub(" ", _DIGIT.sub("0", line.lower())).strip()
        if line:
            lines.append(line)
        if len(lines) == HEAD_LINES:
            break
    return "\n".join(lines)[:HEAD_CHARS]


def signature(text: str) -> np.ndarray | None:
    """The MinHash signature of a text's head; None when the head is empty (nothing to compare)."""
    h = head(text)
    if not h:
        return None
    grams = {h[i : i + SHINGLE] for i in range(max(1, len(h) - SHINGLE + 1))}
    x = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
    return ((_A[:, None] * x[None, :] + _B[:, None]) % _PRIME).min(axis=1)


@dataclass(frozen=True)
class HeadIndex:
    """The training heads of one dataset, signed once; `novelty` compares documents against them."""

    signatures: np.ndarray  # (training heads, PERMUTATIONS)

    @classmethod
    def build(cls, texts: Sequence[str]) -> HeadIndex:
        signed = [s for s in map(signature, texts) if s is not None]
        empty = np.empty((0, PERMUTATIONS), dtype=np.uint64)
        return cls(np.stack(signed) if signed else empty)

    def __len__(self) -> int:
        return len(self.signatures)

    def similarity(self, texts: Sequence[str], *, chunk: int = 64) -> list[float | None]:
        """Per text, its estimated Jaccard similarity to the nearest training head: 0.0 when there are
        no training heads, None when the text has no head."""
        signed = [signature(t) for t in texts]
        out: list[float | None] = [None if s is None else 0.0 for s in signed]
        rows = [i for i, s in enumerate(signed) if s is not None]
        if not rows or not len(self):
            return out
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            queries = np.stack([signed[i] for i in part])  # type: ignore[misc]
            equal = (queries[:, None, :] == self.signatures[None, :, :]).mean(axis=2)
            for i, best in zip(part, equal.max(axis=1)):
                out[i] = float(best)
        return out

    def novelty(self, texts: Sequence[str]) -> list[float | None]:
        """Per text, 1 - its similarity to the nearest training head (None: the text has no head)."""
        return [None if s is None else 1.0 - s for s in self.similarity(texts)]
