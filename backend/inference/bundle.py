"""What answers a request: a base model, optionally with one trained adapter and what it learned.

An `AdapterBundle` names the base, the adapter's weights and the tokenizer saved with its run; what the
adapter learned beyond its weights — its label rules (conventions.json and the label memory beside it),
its confidence calibration and its per-field automation thresholds — is read from its folder on first use and again only when one of those
files changes (`bundle.learned`). Bundles are small frozen values: the model pool keys its loaded
weights by them.

`resolve` is the one way from what a caller wrote to a bundle: a run folder or adapter folder on disk
(where the caller may name folders: the CLI, the agents, an evaluation job), a registry reference such
as `receipts`, `receipts@3` or `receipts@prod` (the service passes its registry lookup in), or a base
model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from backend.errors import NotFound
from backend.labels.calibration import FILE as CALIBRATION_FILE
from backend.labels.calibration import Platt
from backend.labels.conventions import FILE as CONVENTIONS_FILE
from backend.labels.conventions import MEMORY_FILE, Conventions
from backend.labels.thresholds import FILE as THRESHOLDS_FILE
from backend.labels.thresholds import Thresholds
from backend.models.adapters import AdapterNotFoundError, find_adapter


@dataclass(frozen=True)
class Learned:
    """What an adapter learned beyond its weights, for serving."""

    rules: Conventions | None  # how its training labels are written, and its label memory
    calibration: Platt | None  # confidence calibration fitted on held-out answers
    thresholds: Thresholds | None = None  # per-field confidence that auto-approves an answer (thresholds.py)


NOTHING = Learned(None, None)


@dataclass(frozen=True)
class AdapterBundle:
    """A base model, optionally with one adapter: the weights to load and what they learned."""

    base: str  # a model reference for resolve_model
    adapter_id: str | None = None  # "name@version", or the folder's name
    adapter_path: str | None = None  # folder with adapter_config.json
    tokenizer_path: str | None = None  # the tokenizer saved with the adapter's run
    revision: str | None = None  # what makes these weights unique (the registering job): a re-used
    #                              "name@version" after a delete never gets the old weights

    @property
    def label(self) -> str:
        return self.adapter_id or self.base

    @property
    def learned(self) -> Learned:
        """The adapter folder's label rules, calibration and thresholds (NOTHING for a base model)."""
        return learned(self.adapter_path)

    @classmethod
    def of_folder(cls, ref: str | Path, *, base: str | None = None, label: str | None = None) -> AdapterBundle:
        """An adapter on disk — a run folder, a registered version's folder or an adapter folder — with its
        base (or `base` instead) and the tokenizer saved with its run."""
        found = find_adapter(ref)
        name = label or (found.path.parent.name if found.path.name == "adapter" else found.path.name)
        return cls(
            base or found.base_model, name, str(found.path), str(found.tokenizer_path) if found.tokenizer_path else None
        )

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> AdapterBundle:
        """A registered adapter version (its registry record: folder, base, id, registering job)."""
        folder = Path(record["path"])
        tokenizer = folder / "tokenizer"
        return cls(
            record["base_model"],
            record["id"],
            str(folder / "adapter"),
            str(tokenizer) if tokenizer.is_dir() else None,
            revision=record.get("job_id"),
        )


Registry = Callable[[str], dict[str, Any]]  # a reference → its registry record, or NotFound


def resolve(
    ref: str | None,
    *,
    registry: Registry | None = None,
    folders: bool = False,
    base: str | None = None,
    label: str | None = None,
) -> tuple[AdapterBundle, dict[str, Any] | None]:
    """The bundle `ref` names, and its registry record (None for a folder or a base model).

    `folders`: a path to an existing folder names an adapter on disk (never for references sent over
    HTTP). `registry`: the service's lookup of `name[@version|@alias]`. Without a `ref`, or when it is
    neither, the bundle is the base model `base` (or `ref` itself as a base model name): the caller
    decides which bases it serves."""
    if ref and folders and Path(ref).expanduser().exists():
        try:
            return AdapterBundle.of_folder(ref, base=base, label=label), None
        except AdapterNotFoundError as e:
            raise NotFound(str(e)) from e
    if ref and registry is not None:
        record = registry(ref)
        return AdapterBundle.of_record(record), record
    return AdapterBundle(base or ref or ""), None


def learned(adapter_path: str | None) -> Learned:
    """The label rules, calibration and thresholds in an adapter folder, cached until one of their files
    changes."""
    if not adapter_path:
        return NOTHING
    folder = Path(adapter_path)
    stamps = tuple(
        _mtime(p)
        for p in (
            folder / CONVENTIONS_FILE,
            folder.parent / MEMORY_FILE,
            folder / CALIBRATION_FILE,
            folder / THRESHOLDS_FILE,
        )
    )
    return _load(adapter_path, stamps)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0


@lru_cache(maxsize=128)
def _load(adapter_path: str, _stamps: tuple[int, ...]) -> Learned:
    platt, thresholds = Platt.load(adapter_path), Thresholds.load(adapter_path)
    return Learned(
        Conventions.load(adapter_path), platt, thresholds.for_calibration(platt) if thresholds is not None else None
    )
