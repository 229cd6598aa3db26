"""Augmentation keeps every label a faithful reading of the new text, learns from the training split
alone, is seeded, and is off unless asked for."""

from __future__ import annotations

import copy
import json
import random
import re
from decimal import Decimal

import pytest

from backend.cli import main as cli_main
from backend.errors import InvalidRequest
from backend.inference.spans import is_copied
from backend.labels.settlement import ROUNDING, settlement
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
        # in the old one's places; the cash and change lines may change too (the next test)
        assert was and _cashless(_masked(source["text"], was)) == _cashless(_masked(amounts["text"], now))
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


def _cashless(text: str) -> str:
    """`text` without the amounts of its tendered and change lines."""
    pair = settlement(text.replace("\0", "0.00"))
    lines = text.split("\n")
    for at in (pair.tendered_line, pair.change_line) if pair else ():
        lines[at] = PRINTED_AMOUNT.sub("\0", lines[at])
    return "\n".join(lines)


def test_cash_and_change_still_settle_a_rewritten_total():
    kept = raised = exact = 0
    for i, source in enumerate(RECORDS):
        paid = settlement(source["text"])
        total = parse_decimal(source["fields"].get("total"))
        if paid is None or total is None or abs(paid.paid - total) > ROUNDING:
            continue
        for k in range(4):
            record = rewrite_amounts(source, random.Random(f"{i}:{k}"))
            if record is None or record["fields"]["total"] == source["fields"]["total"]:
                continue
            new, after = parse_decimal(record["fields"]["total"]), settlement(record["text"])
            assert after is not None and after.paid - new == paid.paid - total, record["text"]
            assert after.change >= 0
            if paid.tendered == total:  # paid exactly: the cash line printed the total, rewritten with it
                assert after.tendered == new and after.change == paid.change
                exact += 1
            elif after.tendered == paid.tendered:  # the same cash leaves another change
                kept += 1
            else:  # the new total exceeds the cash: the next ten
                assert after.tendered % 10 == 0 and after.tendered - 10 < new <= after.tendered
                raised += 1
    assert kept > 5 and raised > 5 and exact > 5, (kept, raised, exact)  # the shipped receipts do all three


def test_cash_raised_to_the_next_ten_when_the_new_total_exceeds_it():
    record = {"text": "SHOP\nTOTAL 18.50\nCASH 20.00\nCHANGE 1.50\nTHANK YOU", "fields": {"total": "18.50"}}
    for seed in range(40):
        new = rewrite_amounts(record, random.Random(seed))
        assert new is not None
        total = Decimal(new["fields"]["total"])
        lines = new["text"].split("\n")
        cash = Decimal(lines[2].split()[1]) if total <= 20 else (total / 10).to_integral_value("ROUND_CEILING") * 10
        assert lines[1:4] == [f"TOTAL {total:.2f}", f"CASH {cash:.2f}", f"CHANGE {cash - total:.2f}"]


def test_decimal_comma_amounts_are_rewritten_in_their_own_format():
    text = "LADEN GMBH\nBROT 1.234,50\nSUMME EUR 1.234,50\nCASH 1.300,00\nCHANGE 65,50\nDANKE"
    record = {"text": text, "fields": {"company": "LADEN GMBH", "total": "1.234,50"}}
    assert kind("1.234,50") == kind("12,50") == "amount" and sender_block(record) is not None
    new = rewrite_amounts(record, random.Random(1))
    assert new is not None
    label = new["fields"]["total"]
    total = parse_decimal(label, decimal=",")
    assert re.fullmatch(r"(\d{1,3}(\.\d{3})*|\d+),\d\d", label) and total != Decimal("1234.50")
    lines = new["text"].split("\n")
    assert lines[1] == f"BROT {label}" and lines[2] == f"SUMME EUR {label}"
    cash, change = (parse_decimal(line.split()[1], decimal=",") for line in lines[3:5])
    assert cash - change == total and "." not in lines[4].split()[1]


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
