"""Candidate generation on hand-made documents, and the candidate scorer on the tiny model
(backend/inference/candidates.py)."""

from __future__ import annotations

import json
import math
from datetime import date

import pytest
import torch

from backend.inference.candidates import (
    amount_candidates,
    answer_prefix,
    date_candidates,
    group,
    line_candidates,
    meaning,
    rank,
    rank_fields,
    score_continuations,
    score_values,
)
from backend.prompts import ExtractionSchema, extraction_answer

RECEIPT = """BOOK SHOP SDN BHD
NO.53 55,57 & 59, JALAN SAGU 18,
DATE: 25/12/2018 8:13:39 PM TIME 12:30
INVOICE NO 2018-0042 TEL 07-3507405
1 PC * 9.000 0.00 9.00
SUBTOTAL: 1,250.00
ROUNDING ADJ -0.02
TOTAL (RM): RM 1,249.98
CASH RM1300.00 CHANGE $50.02
PRINTED 03 MAR 2018 18:22 / DEC 5, 2018 / 2018-03-23 / 31/02/2018
"""


def test_amount_candidates_are_the_printed_amounts():
    values = [c.value for c in amount_candidates(RECEIPT)]
    assert values == ["0.00", "9.00", "1,250.00", "-0.02", "1,249.98", "1300.00", "50.02"]


def test_amount_candidates_skip_dates_times_codes_and_three_decimals():
    values = {c.value for c in amount_candidates(RECEIPT)}
    for not_an_amount in ["9.000", "25", "12", "07", "2018", "12.30", "18.22"]:
        assert not_an_amount not in values
    assert [c.value for c in amount_candidates("TOTAL:9.90\nV1.2.3 12.5KG GST 6.00% 0.60")] == ["9.90", "0.60"]


def test_amount_candidate_spans_point_at_the_text():
    for c in amount_candidates(RECEIPT):
        assert RECEIPT[c.start : c.end] == c.value


def test_date_candidates_read_as_dates_without_the_time():
    values = [c.value for c in date_candidates(RECEIPT)]
    assert values == ["25/12/2018", "03 MAR 2018", "DEC 5, 2018", "2018-03-23"]  # 31/02/2018 is no date
    for c in date_candidates(RECEIPT):
        assert RECEIPT[c.start : c.end] == c.value


@pytest.mark.parametrize(
    "text,expected",
    [
        ("DATE : 21-05-17 10:00", ["21-05-17"]),
        ("15.01.2019", ["15.01.2019"]),
        ("30-JUN-2018", ["30-JUN-2018"]),
        ("REF 12/72 X", []),
        ("TEL 03-3271 9872", []),
        ("NO 2018", []),
        ("LOT 1/2/3456789", []),
    ],
)
def test_date_candidates_hand_made(text, expected):
    assert [c.value for c in date_candidates(text)] == expected


def test_line_candidates_are_runs_of_whole_lines_in_the_window():
    doc = "  ACME TRADING (123-X)\n\nNO 1, JALAN A,\n40000 SHAH ALAM.\nTOTAL 9.00"
    runs = [c.value for c in line_candidates(doc, within=2, max_lines=2)]
    assert runs == [
        "ACME TRADING (123-X)",
        "ACME TRADING (123-X) NO 1, JALAN A,",
        "NO 1, JALAN A,",
        "NO 1, JALAN A, 40000 SHAH ALAM.",
    ]
    spans = line_candidates(doc, within=3, max_lines=3)
    assert all(doc[c.start : c.end].split() == c.value.split() for c in spans)  # each points at its lines
    assert "TOTAL 9.00" not in {c.value for c in spans}  # starts on line 4: outside the window
    assert any(c.value.endswith("TOTAL 9.00") for c in spans)  # a run may end past it


def test_line_candidates_with_prefixes_add_each_lines_first_words():
    values = [c.value for c in line_candidates("ACME TRADING (123-X)\nNO 1", within=1, max_lines=1, prefixes=True)]
    assert values == ["ACME", "ACME TRADING", "ACME TRADING (123-X)"]
    assert line_candidates("", within=3, max_lines=2) == []


def test_answer_prefix_matches_the_training_answer_layout():
    names = ["company", "date", "address", "total"]
    values = {"company": 'BOOK "SHOP"', "date": "25/12/2018", "address": None, "total": "9.00"}
    answer = extraction_answer(values, ExtractionSchema.from_names(names))
    for field in names:
        prefix, closing = answer_prefix(names, values, field)
        value = values[field]
        if value is not None:
            assert answer.startswith(prefix + json.dumps(value)[1:-1] + closing)
    assert answer_prefix(names, values, "total")[1] == '"}'
    assert answer_prefix(names, values, "company")[0] == '{"company": "'


def test_group_adds_up_the_forms_of_one_meaning():
    ranked = group(
        ["RM9.00", "9.00", "9.10", "x"], [math.log(0.2), math.log(0.3), math.log(0.4), math.log(0.1)], meaning("amount")
    )
    assert [v for v, _ in ranked] == ["9.00", "9.10", "x"]  # 0.5 for nine beats 0.4
    assert ranked[0][1] == pytest.approx(math.log(0.5))
    dates = group(["25/12/2018", "2018-12-25"], [-1.0, -2.0], meaning("date"))
    assert len(dates) == 1 and dates[0][0] == "25/12/2018"
    assert meaning("date")("25/12/2018") == date(2018, 12, 25)


def test_group_counts_each_place_a_value_is_printed():
    # 9.10 is likelier as written, but 9.00 is printed three times (TOTAL, CASH, ROUNDED)
    ranked = group(["9.10", "9.00"], [math.log(0.5), math.log(0.3)], meaning("amount"), {"9.10": 1, "9.00": 3})
    assert ranked[0][0] == "9.00" and ranked[0][1] == pytest.approx(math.log(0.9))


# -- the scorer on the tiny model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


def _reference(model, context: list[int], continuation: list[int]) -> float:
    """Log-likelihood by one plain forward pass over context + continuation."""
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[len(context) + i - 1, t]) for i, t in enumerate(continuation))


def test_scores_on_the_cache_equal_a_plain_forward_pass(tiny):
    model, tokenizer = tiny
    context = tokenizer("Document: total 9.00 and 19.50", add_special_tokens=False)["input_ids"]
    continuations = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in ['9.00"}', '19.50"}', "x"]]
    scores = score_continuations(model, context, continuations)
    for score, continuation in zip(scores, continuations):
        assert score == pytest.approx(_reference(model, context, continuation), abs=1e-3)
    assert score_continuations(model, context, []) == []


def test_scoring_in_chunks_under_a_logits_budget_gives_the_same_scores(tiny):
    model, tokenizer = tiny
    context = tokenizer("Document: total 9.00 and 19.50", add_special_tokens=False)["input_ids"]
    continuations = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in ['9.00"}', '19.50"}', "x", "1"]]
    whole = score_continuations(model, context, continuations)
    for budget in (1, 2 * 8 * model.config.vocab_size):  # one row per batch; two rows per batch
        chunked = score_continuations(model, context, continuations, budget=budget)
        assert chunked == pytest.approx(whole, abs=1e-4)


def test_score_values_scores_the_whole_answer_after_the_shared_part(tiny):
    model, tokenizer = tiny
    prompt = tokenizer("Document: total 9.00", add_special_tokens=False)["input_ids"]
    prefix, closing = '{"total": "', '"}'
    values = ["9.00", "19.50", "9.001"]
    scores = score_values(model, tokenizer, prompt, prefix, values, closing)
    full = [tokenizer(prefix + v + closing, add_special_tokens=False)["input_ids"] for v in values]
    shared = 0
    while all(len(f) > shared + 1 and f[shared] == full[0][shared] for f in full):
        shared += 1
    for score, ids in zip(scores, full):
        assert score == pytest.approx(_reference(model, prompt + ids[:shared], ids[shared:]), abs=1e-3)


def test_rank_groups_and_orders_candidates(tiny):
    model, tokenizer = tiny
    prompt = tokenizer("TOTAL RM 9.00", add_special_tokens=False)["input_ids"]
    ranked = rank(
        model,
        tokenizer,
        prompt,
        ["company", "total"],
        {"company": "SHOP"},
        "total",
        ["9.00", "RM9.00", "12.00", "9.00"],
        "amount",
    )
    assert len(ranked) == 2 and {v for v, _ in ranked} <= {"9.00", "RM9.00", "12.00"}
    assert ranked[0][1] >= ranked[1][1]
    assert all(s < 0 for _, s in ranked)


def test_rank_fields_scores_several_fields_as_rank_does_one_by_one(tiny):
    model, tokenizer = tiny
    prompt = tokenizer("DATE 25/12/2018 TOTAL RM 9.00", add_special_tokens=False)["input_ids"]
    names, values = ["date", "company", "total"], {"date": "25/12/2018", "company": "SHOP", "total": "9.00"}
    asked = {"date": (["25/12/2018", "26/12/2018"], "date"), "total": (["9.00", "12.00", "0.50"], "amount")}
    together = rank_fields(model, tokenizer, prompt, names, values, asked)
    for field, (candidates, kind) in asked.items():
        alone = rank(model, tokenizer, prompt, names, values, field, candidates, kind)
        assert [v for v, _ in together[field]] == [v for v, _ in alone]
        assert [s for _, s in together[field]] == pytest.approx([s for _, s in alone], abs=1e-3)
    assert rank_fields(model, tokenizer, prompt, names, values, {"total": ([], "amount")}) == {"total": []}
