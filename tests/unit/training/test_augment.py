"""Augmentation keeps every label a faithful reading of the new text, learns from the training split
alone, is seeded, and is off unless asked for."""

from __future__ import annotations

import copy
import json
import random

import pytest

from backend.cli import main as cli_main
from backend.errors import InvalidRequest
from backend.inference.spans import is_copied
from backend.services.jobs import check_job_request
from backend.training.augment import (
    HEAD_LINES,
    PRINTED_AMOUNT,
    augment_records,
    kind,
    rewrite_amounts,
    rewrite_dates,
    sender_block,
    spans,
    string_fields,
    swap_lines,
    swap_sender,
)
from backend.training.config import TrainConfig
from backend.training.data import load_jsonl, split
from backend.training.recipe import augment_examples, load_data
from backend.training.runfile import load_config
from backend.training.trainer import train
from backend.values import parse_date, parse_decimal
from conftest import EXAMPLES

# every extraction example shipped: {"text", "fields"} records
RECORDS = [
    record
    for path in sorted(EXAMPLES.glob("*.jsonl"))
    for line in path.read_text().splitlines()
    if line.strip() and {"text", "fields"} <= set(record := json.loads(line))
]


def _found(record: dict) -> set[str]:
    """The fields whose labels the record's text holds, as the span-copy check reads them."""
    return {name for name, value in string_fields(record).items() if is_copied(value, record["text"])}


def _masked(text: str, found: list) -> str:
    """`text` with each match (or span) replaced by a mark: what stays when the values are set aside."""
    for start, end in reversed([m if isinstance(m, tuple) else m.span() for m in found]):
        text = text[:start] + "\0" + text[end:]
    return text


def test_the_examples_hold_the_receipts():
    assert len(RECORDS) >= 64


def test_every_augmented_record_keeps_its_labels_in_its_text():
    before = copy.deepcopy(RECORDS)
    made = augment_records(RECORDS, 3, seed=7)
    assert RECORDS == before  # pure: the sources are not touched
    assert sum(map(len, made)) > 2 * len(RECORDS)
    changed = {"company": 0, "total": 0, "date": 0}
    for source, records in zip(RECORDS, made):
        for record in records:
            assert record["text"] != source["text"] and set(record["fields"]) == set(source["fields"])
            assert _found(source) <= _found(record), (source["text"], record)
            for name, value in record["fields"].items():
                old = source["fields"][name]
                if value == old:
                    continue
                changed[name] = changed.get(name, 0) + 1
                if kind(old) == "amount":
                    assert parse_decimal(value) != parse_decimal(old)
                    printed = [m[0] for m in PRINTED_AMOUNT.finditer(record["text"])]
                    assert any(parse_decimal(p) == parse_decimal(value) for p in printed)
                elif kind(old) == "date":
                    assert parse_date(value) not in (None, parse_date(old))
                    assert value in record["text"]
    assert all(changed.values()), changed  # each kind of substitution happens


@pytest.mark.parametrize("source", RECORDS, ids=lambda r: r.get("id", "record"))
def test_each_substitution_writes_the_new_value_where_the_old_one_was(source):
    rng = random.Random(3)
    amounts = rewrite_amounts(source, rng)
    for name, old in string_fields(source).items():
        if amounts is None or amounts["fields"][name] == old:
            continue
        new = parse_decimal(amounts["fields"][name])
        was = [m for m in PRINTED_AMOUNT.finditer(source["text"]) if parse_decimal(m[0]) == parse_decimal(old)]
        now = [m for m in PRINTED_AMOUNT.finditer(amounts["text"]) if parse_decimal(m[0]) == new]
        assert was and _masked(source["text"], was) == _masked(amounts["text"], now)  # in the old one's places
        assert not any(parse_decimal(m[0]) == parse_decimal(old) for m in PRINTED_AMOUNT.finditer(amounts["text"]))
    dates = rewrite_dates(source, rng)
    for name, old in string_fields(source).items():
        if dates is None or dates["fields"][name] == old:
            continue
        new = dates["fields"][name]
        assert parse_date(new) is not None and spans(new, dates["text"]) and not spans(old, dates["text"])
        assert _masked(source["text"], spans(old, source["text"])) == _masked(dates["text"], spans(new, dates["text"]))
    block = sender_block(source)
    donors = [b for r in RECORDS if (b := sender_block(r)) is not None]
    swapped = swap_sender(source, donors, rng)
    if block is not None and swapped is not None:
        lines, labels = block
        start = source["text"].split("\n").index(lines[0])
        new_lines = swapped["text"].split("\n")
        assert any(  # a donor's block stands where the old one did, its labels now the record's
            new_lines[start : start + len(b[0])] == b[0] and b[1] == {n: swapped["fields"][n] for n in labels}
            for b in donors
        )
        assert not any(spans(old, swapped["text"]) for n, old in labels.items() if old != swapped["fields"][n])


def test_line_order_noise_moves_only_lines_away_from_every_label():
    swapped = 0
    for source in RECORDS:
        moved = swap_lines(source, random.Random(5))
        if moved is None:
            continue
        swapped += 1
        old, new = source["text"].split("\n"), moved["text"].split("\n")
        assert sorted(old) == sorted(new) and moved["fields"] == source["fields"]
        [i, j] = [n for n in range(len(old)) if old[n] != new[n]]
        assert j == i + 1 and (old[i], old[j]) == (new[j], new[i])  # two neighbours traded places
        assert i >= HEAD_LINES  # below the sender block
        for value in string_fields(source).values():  # and no label's line, or a line beside one, moved
            for start, end in spans(value, source["text"]):
                first, last = source["text"].count("\n", 0, start), source["text"].count("\n", 0, end)
                assert not {i, j} & set(range(first - 1, last + 2)), (value, old[i], old[j])
        assert _found(source) <= _found(moved)
    assert swapped >= len(RECORDS) // 4, swapped  # receipts' item lines allow it often


def test_same_seed_same_output_and_another_seed_another():
    assert augment_records(RECORDS, 2, seed=1) == augment_records(copy.deepcopy(RECORDS), 2, seed=1)
    assert augment_records(RECORDS, 2, seed=1) != augment_records(RECORDS, 2, seed=2)


def test_only_the_training_split_is_augmented_or_donates():
    loaded = load_jsonl(EXAMPLES / "receipts.jsonl")
    original = [json.loads(line) for line in (EXAMPLES / "receipts.jsonl").read_text().splitlines()]
    train_ex, val_ex = split(loaded.examples, val_fraction=0.25, seed=5)
    config = TrainConfig(data=[str(EXAMPLES / "receipts.jsonl")], augment=2, val_fraction=0.25, seed=5)
    augmented = augment_examples(train_ex, config, loaded.schema)
    assert augmented and all(e.origin.endswith("(augmented)") for e in augmented)
    assert val_ex and all(e.record in original for e in val_ex)  # as labelled in the file
    val_heads = {"\n".join(b[0]) for e in val_ex if (b := sender_block(e.record))}
    train_heads = {"\n".join(b[0]) for e in train_ex if (b := sender_block(e.record))}
    only_val = val_heads - train_heads
    assert only_val and not any(head in e.record["text"] for e in augmented for head in only_val)
    sources = {e.origin for e in train_ex}
    assert {e.origin.removesuffix(" (augmented)") for e in augmented} <= sources


def test_augment_0_leaves_the_training_set_as_it_is():
    loaded = load_jsonl(EXAMPLES / "receipts.jsonl")
    train_ex, _ = split(loaded.examples, val_fraction=0.1, seed=42)
    config = TrainConfig(data=[str(EXAMPLES / "receipts.jsonl")])
    assert config.augment == 0 and augment_examples(train_ex, config, loaded.schema) == []


def test_training_with_augment_grows_the_training_set(tiny_config):
    data = [str(EXAMPLES / "receipts.jsonl")]
    summary = train(tiny_config(data=data, augment=2, max_steps=1, max_length=1024), progress_bar=False).summary
    assert summary["data"]["augmented"] > len(RECORDS)  # up to 2 per training record
    assert summary["data"]["train_examples"] == summary["data"]["examples"] + summary["data"]["augmented"] - len(
        summary["data"]["too_long"]
    )


def test_augment_is_an_option_everywhere_and_refused_on_chat_data(tmp_path, tiny_model, capsys):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"data: {EXAMPLES / 'receipts.jsonl'}\naugment: 3\n")
    assert load_config(run_file).augment == 3
    check_job_request(kind="train", params={"augment": 2})
    with pytest.raises(InvalidRequest, match="augment: got -1"):
        check_job_request(kind="train", params={"augment": -1})
    with pytest.raises(InvalidRequest, match="augment: got 2, but .*chat.jsonl holds no extraction records"):
        load_data(TrainConfig(data=[str(EXAMPLES / "chat.jsonl")], augment=2))
    chat = ["train", "--data", str(EXAMPLES / "chat.jsonl"), "--augment", "2", "--model", tiny_model]
    assert cli_main([*chat, "--output-dir", str(tmp_path / "runs"), "--report-to", "none"]) == 2
    assert "augment: got 2" in capsys.readouterr().err and not (tmp_path / "runs").exists()
