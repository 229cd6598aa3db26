"""Recall a text field's label from the most similar training document: recurring senders keep their labels.

A business sees the same suppliers again and again, and its labels for a supplier's name and address
are the same each time, spelt the annotators' way (a typo kept, a phone line left out, a branch line
included). `Exemplars` keeps, per training document, its head (the first HEAD_LINES non-empty lines,
where senders print who and where they are) and its text-field labels. For a new document, `recall`
finds the training head most like its own (rapidfuzz token-set ratio >= SIMILAR) and takes that
document's label for the field if the new document itself holds it (partial ratio of the normalised
texts >= FITS), so a neighbour from another branch of a chain, whose address is not on this receipt, is
not taken. Otherwise nothing is recalled and the model's value stands.

Only fields whose labels stay with the sender are recalled: `learn` tries recall on the training
documents themselves (each against the others, up to SAMPLE of them) and keeps the fields where at
least STABLE of what it recalled was the document's own label (a name, an address), not those that
change from one document to the next while the old value may still be printed (a payment method, a
status). The thresholds below were chosen on development folds of the training part
(`benchmarks/sroie_recipe.py --eval-on foldK`, never on held-back data), where recall was insensitive to
SIMILAR from 60 to 80 and to 4-8 head lines, and letting several near neighbours vote did worse than
copying the nearest sender's labelling.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from backend.scoring.normalize import norm_text
from backend.values import is_absent

HEAD_LINES = 6  # the lines of a document that say who sent it
SIMILAR = 80.0  # token-set ratio between two heads for the documents to count as the same sender's
FITS = 100.0  # partial ratio: how wholly the new document must contain a recalled label
STABLE = 0.9  # share of recalls on the training documents that must be right for a field to be recalled
MIN_RECALLS = 5  # recalls on the training documents needed to judge a field
SAMPLE = 500  # training documents tried against the others when judging the fields


def head(document: str, lines: int = HEAD_LINES) -> str:
    return " ".join([line.strip() for line in document.splitlines() if line.strip()][:lines])


@dataclass
class Exemplars:
    heads: list[str] = field(default_factory=list)
    labels: list[dict[str, str]] = field(default_factory=list)  # per document: {text field: label}
    fields: list[str] = field(default_factory=list)  # the fields recall is trusted with (learned)
    similar: float = SIMILAR
    fits: float = FITS

    @classmethod
    def learn(cls, examples: Iterable[tuple[str, dict[str, Any]]], names: list[str], **thresholds: float
              ) -> Exemplars:
        """From (document text, gold fields) pairs, keeping the labels of the text fields `names`; the
        fields whose labels stay with the sender are trusted (see the module's docstring)."""
        heads, labels, texts = [], [], []
        for text, fields in examples:
            kept = {n: str(fields[n]) for n in names if isinstance(fields.get(n), str) and not is_absent(fields[n])}
            if kept:
                heads.append(head(text))
                labels.append(kept)
                texts.append(text)
        memory = cls(heads, labels, list(names), **thresholds)
        memory.fields = memory._stable(texts, names)
        return memory

    def _stable(self, texts: list[str], names: list[str]) -> list[str]:
        tried = {n: [0, 0] for n in names}  # recalled, right
        for i in random.Random(0).sample(range(len(texts)), min(SAMPLE, len(texts))):
            j = self._nearest(self.heads[i], skip=i)
            for name in names:
                label = self.labels[j].get(name) if j is not None else None
                if label is not None and self._holds(texts[i], label):
                    tried[name][0] += 1
                    tried[name][1] += norm_text(label) == norm_text(self.labels[i].get(name, ""))
        return [n for n, (recalled, right) in tried.items() if recalled >= MIN_RECALLS and right >= STABLE * recalled]

    def recall(self, document: str, name: str) -> str | None:
        """`name`'s label on the training document whose head is most like this one's, if this one holds it."""
        if name not in self.fields:
            return None
        j = self._nearest(head(document))
        label = self.labels[j].get(name) if j is not None else None
        return label if label is not None and self._holds(document, label) else None

    def _nearest(self, query: str, skip: int | None = None) -> int | None:
        for _, _, j in process.extract(query, self.heads, scorer=fuzz.token_set_ratio, limit=2,
                                       score_cutoff=self.similar):
            if j != skip:
                return j
        return None

    def _holds(self, document: str, label: str) -> bool:
        return fuzz.partial_ratio(norm_text(label), norm_text(document.replace("\n", " "))) >= self.fits

    def to_json(self) -> dict[str, Any]:
        return {"fields": self.fields, "similar": self.similar, "fits": self.fits, "heads": self.heads,
                "labels": self.labels}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Exemplars:
        return cls(list(data.get("heads", [])), [dict(x) for x in data.get("labels", [])],
                   list(data.get("fields", [])), float(data.get("similar", SIMILAR)), float(data.get("fits", FITS)))
