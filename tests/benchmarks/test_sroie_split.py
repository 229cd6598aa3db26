"""The recorded SROIE train/dev split (benchmarks/sroie_split.py): deterministic, disjoint, and what the
source file gives (the real check runs where the SROIE file is present)."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("sroie_split", ROOT / "benchmarks" / "sroie_split.py")
sroie_split = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sroie_split)


@pytest.fixture
def source(tmp_path) -> Path:
    rows = [{"id": f"R{i:04d}", "text": f"SHOP {i}", "fields": {"total": f"{i}.00"}} for i in range(200)]
    path = tmp_path / "receipts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_split_is_deterministic_disjoint_and_keeps_the_old_held_out_receipts_in_train(source):
    first = sroie_split.make_split(source, seed=7, dev_size=40)
    assert first == sroie_split.make_split(source, seed=7, dev_size=40)
    dev, train, tune = set(first["dev_ids"]), set(first["train_ids"]), set(first["tune_ids"])
    assert len(dev) == 40 and len(train) == 160 and not dev & train
    lines = source.read_text().splitlines()
    random.Random(sroie_split.OLD_SEED).shuffle(lines)
    assert tune == {json.loads(line)["id"] for line in lines[:sroie_split.OLD_VAL]}  # the old held-out part
    assert tune <= train
    assert first["source_sha256"] == sroie_split.sha256(source)
    assert "CC BY 4.0" in first["credit"]
    assert sroie_split.make_split(source, seed=8, dev_size=40)["dev_ids"] != first["dev_ids"]


def test_check_and_load_catch_a_changed_split_or_source(source, tmp_path):
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(sroie_split.make_split(source, seed=7, dev_size=40)))
    assert sroie_split.check(source, split_file) == []
    train, dev = sroie_split.load_split(source, split_file)
    assert [r["id"] for r in dev] == json.loads(split_file.read_text())["dev_ids"]
    assert len(train) == 160 and all(r["fields"] for r in train)
    assert {r["id"] for r in sroie_split.tune_rows(source, split_file)} <= {r["id"] for r in train}

    record = json.loads(split_file.read_text())
    record["dev_ids"][0], record["train_ids"][0] = record["train_ids"][0], record["dev_ids"][0]
    split_file.write_text(json.dumps(record))
    assert "dev_ids differs from make_split()" in sroie_split.check(source, split_file)

    source.write_text(source.read_text() + json.dumps({"id": "NEW", "text": "", "fields": {}}) + "\n")
    with pytest.raises(ValueError, match="sha256"):
        sroie_split.load_split(source, split_file)


def test_development_folds_partition_the_train_part_and_never_touch_dev(source, tmp_path):
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(sroie_split.make_split(source, seed=7, dev_size=40)))
    train, dev = sroie_split.load_split(source, split_file)
    held = []
    for k in range(sroie_split.FOLDS):
        rest, fold = sroie_split.fold_rows(k, source=source, split_file=split_file)
        assert len(fold) == 32 and len(rest) == 128 and not {r["id"] for r in rest} & {r["id"] for r in fold}
        assert fold == sroie_split.fold_rows(k, source=source, split_file=split_file)[1]  # deterministic
        held += [r["id"] for r in fold]
    assert sorted(held) == sorted(r["id"] for r in train) and not set(held) & {r["id"] for r in dev}
    with pytest.raises(ValueError, match="fold 5"):
        sroie_split.fold_rows(5, source=source, split_file=split_file)


@pytest.mark.skipif(not sroie_split.SOURCE.is_file(), reason="sroie_train.jsonl (SROIE) not present")
def test_the_recorded_split_matches_the_shared_data():
    assert sroie_split.check() == []
    record = sroie_split.load_record()
    assert record["counts"] == {"source": 626, "train": 500, "dev": 126, "tune": 60}


def test_training_samples_are_seeded_ordered_and_nest(source):
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    small, large = sroie_split.sample_rows(rows, 50, seed=3), sroie_split.sample_rows(rows, 100, seed=3)
    assert len(small) == 50 and len(large) == 100
    assert small == sroie_split.sample_rows(rows, 50, seed=3)  # deterministic
    assert [r["id"] for r in small] == sorted(r["id"] for r in small)  # the rows' own order
    assert {r["id"] for r in small} <= {r["id"] for r in large}  # learning-curve points nest
    assert sroie_split.sample_rows(rows, 50, seed=4) != small
    assert sroie_split.sample_rows(rows, 200, seed=3) == rows
    for bad in (0, 201):
        with pytest.raises(ValueError, match=f"a sample of {bad} from 200 rows"):
            sroie_split.sample_rows(rows, bad, seed=3)


def test_export_tune_holds_out_the_tune_receipts_and_the_example_documents(source, tmp_path, monkeypatch):
    """What an adapter is trained on (train.jsonl) never holds the receipts it is calibrated on (tune.jsonl)
    nor those the agents are then measured on (examples/documents/sroie_*.txt)."""
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(sroie_split.make_split(source, seed=7, dev_size=40)))
    shown = {p.stem.removeprefix("sroie_") for p in (ROOT / "examples" / "documents").glob("sroie_*.txt")}
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rows[0]["id"] = sorted(shown)[0]  # one training receipt is an example document
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    split_file.write_text(json.dumps(sroie_split.make_split(source, seed=7, dev_size=40)))
    out = tmp_path / "export"
    monkeypatch.setattr("sys.argv", ["sroie_split.py", "--source", str(source), "--out", str(split_file),
                                     "--export-tune", str(out)])
    sroie_split.main()
    split = json.loads(split_file.read_text())
    texts = {r["id"]: r["text"] for r in rows}
    train = [json.loads(line)["text"] for line in (out / "train.jsonl").read_text().splitlines()]
    tune = [json.loads(line)["text"] for line in (out / "tune.jsonl").read_text().splitlines()]
    assert sorted(tune) == sorted(texts[i] for i in split["tune_ids"])
    held = set(split["tune_ids"]) | (shown & set(split["train_ids"]))
    assert sorted(train) == sorted(texts[i] for i in split["train_ids"] if i not in held)
    assert not set(train) & set(tune) and texts[sorted(shown)[0]] not in train
