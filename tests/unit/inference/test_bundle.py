"""Adapter bundles: one resolver from what a caller wrote (folder, registry reference, base model) to
what answers, and what an adapter learned read once per folder."""

from __future__ import annotations

import json
import os

import pytest

from backend.errors import NotFound
from backend.inference.bundle import NOTHING, AdapterBundle, learned, resolve
from backend.labels.calibration import Platt
from backend.labels.thresholds import fit_thresholds
from backend.models.adapters import AdapterNotFoundError


def _adapter(root, base="base-x"):
    adapter = root / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    return adapter


def test_a_folder_resolves_only_where_the_caller_may_name_folders(tmp_path):
    adapter = _adapter(tmp_path)
    bundle, record = resolve(str(tmp_path / "run"), folders=True)
    assert record is None and bundle == AdapterBundle("base-x", "run", str(adapter))
    assert resolve(str(adapter), folders=True, base="other")[0].base == "other"
    # over HTTP a path is never a folder: without `folders` it is only a name
    assert resolve(str(tmp_path / "run"))[0] == AdapterBundle(str(tmp_path / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="adapter_config.json"):
        resolve(str(tmp_path / "empty"), folders=True)


def test_a_registry_reference_resolves_through_the_lookup_it_is_given(tmp_path):
    folder = tmp_path / "adapters" / "receipts" / "v3"
    (folder / "tokenizer").mkdir(parents=True)
    records = {
        "receipts@prod": {"path": str(folder), "base_model": "smollm2-135m", "id": "receipts@3", "job_id": "job-1"}
    }

    def lookup(ref):
        if ref not in records:
            raise AdapterNotFoundError(f"adapter {ref!r} does not exist")
        return records[ref]

    bundle, record = resolve("receipts@prod", registry=lookup)
    assert record is records["receipts@prod"]
    assert bundle == AdapterBundle(
        "smollm2-135m", "receipts@3", str(folder / "adapter"), str(folder / "tokenizer"), revision="job-1"
    )
    assert bundle.label == "receipts@3"
    with pytest.raises(NotFound):
        resolve("receipts@dev", registry=lookup)
    assert resolve(None, base="smollm2-135m") == (AdapterBundle("smollm2-135m"), None)


def test_learned_is_read_once_per_folder_and_again_when_a_file_changes(tmp_path):
    adapter = _adapter(tmp_path)
    bundle = AdapterBundle.of_folder(adapter)
    assert learned(None) is NOTHING and AdapterBundle("base").learned is NOTHING and bundle.learned == NOTHING
    Platt(a=2.0, b=0.0).save(adapter)
    first = bundle.learned
    assert first.calibration is not None and bundle.learned is first  # cached
    Platt(a=3.0, b=0.0).save(adapter)
    os.utime(adapter / "calibration.json", ns=(1, 10**18))  # a rewrite within the clock's resolution
    assert bundle.learned.calibration.a == 3.0


def test_learned_carries_the_thresholds_fitted_under_the_current_calibration(tmp_path):
    adapter = _adapter(tmp_path)
    bundle = AdapterBundle.of_folder(adapter)
    assert bundle.learned.thresholds is None
    platt = Platt(a=2.0, b=0.5, pairs=300)
    platt.save(adapter)
    fit_thresholds({"total": [(0.9, True)] * 300}, calibration=platt).save(adapter)
    loaded = bundle.learned.thresholds
    assert loaded is not None and loaded.fields["total"].threshold == 0.9 and not loaded.stale
    assert loaded.mark("total", 0.95) == "auto"
    Platt(a=3.0, b=0.0, pairs=300).save(adapter)  # recalibrated since: the thresholds no longer hold
    os.utime(adapter / "calibration.json", ns=(1, 10**18))
    assert bundle.learned.thresholds.stale and bundle.learned.thresholds.mark("total", 0.95) == "review"
