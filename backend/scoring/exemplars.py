"""Recall a text field's label from the most similar training document: recurring senders keep their labels.

A business sees the same suppliers again and again, and its labels for a supplier's name and address
are the same each time, spelt the annotators' way (a typo kept, a phone line left out, a branch line
included). `Exemplars` keeps, per training document, its head (the first HEAD_LINES non-empty lines,
where senders print who and where they are) and its text-field labels. For a new document, `recall`
finds the training head most like its own (rapidfuzz token-set ratio >= SIMILAR) and takes that
document's label for the field if the new document itself holds it (partial ratio of the normalised
texts >= FITS), so a neighbour from another branch of a chain, whose address is not on this receipt, is
not taken. Otherwise nothing is recalled and the model's value stands. Measured on the tune slice and
development fold 0 (160 receipts, Gemma 3 recipe): companies 149 -> 152 right, addresses 138 -> 142,
the same for SIMILAR 60-80 and 4-8 head lines (90: 151 and 141); letting the five nearest vote, or
taking the first of them whose label fits, did worse (the nearest sender's labelling is the one to copy).

Nothing here names a dataset; the thresholds are chosen on development folds of the training part
(benchmarks/sroie_recipe.py --eval-on foldK), never on held-back data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from backend.scoring.normalize import is_absent, norm_text

HEAD_LINES = 6  # the lines of a document that say who sent it
SIMILAR = 80.0  # token-set ratio between two heads for the documents to count as the same sender's
FITS = 100.0  # partial ratio: how wholly the new document must contain a recalled label


def head(document: str, lines: int = HEAD_LINES) -> str:
    return " ".join([line.strip() for line in document.splitlines() if line.strip()][:lines])


@dataclass
class Exemplars:
    heads: list[str] = field(default_factory=list)
    labels: list[dict[str, str]] = field(default_factory=list)  # per document: {text field: label}
    similar: float = SIMILAR
    fits: float = FITS

    @classmethod
    def learn(cls, examples: Iterable[tuple[str, dict[str, Any]]], names: list[str], **thresholds: float
              ) -> "Exemplars":
        """From (document text, gold fields) pairs, keeping the labels of the text fields `names`."""
        heads, labels = [], []
        for text, fields in examples:
            kept = {n: str(fields[n]) for n in names if isinstance(fields.get(n), str) and not is_absent(fields[n])}
            if kept:
                heads.append(head(text))
                labels.append(kept)
        return cls(heads, labels, **thresholds)

    def recall(self, document: str, name: str) -> str | None:
        """`name`'s label on the training document whose head is most like this one's, if this one holds it."""
        from rapidfuzz import fuzz, process

        if not self.heads:
            return None
        near = process.extractOne(head(document), self.heads, scorer=fuzz.token_set_ratio, score_cutoff=self.similar)
        label = self.labels[near[2]].get(name) if near else None
        if label is None or fuzz.partial_ratio(norm_text(label), norm_text(document.replace("\n", " "))) < self.fits:
            return None
        return label

    def to_json(self) -> dict[str, Any]:
        return {"similar": self.similar, "fits": self.fits, "heads": self.heads, "labels": self.labels}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Exemplars":
        return cls(list(data.get("heads", [])), [dict(x) for x in data.get("labels", [])],
                   float(data.get("similar", SIMILAR)), float(data.get("fits", FITS)))
