"""Candidate ranking after decoding (backend/inference/ranking.py): which fields each mode ranks, the
decisions on the tiny model, and extraction with `rank` on a trained tiny adapter (its conventions.json
says which fields are amounts, dates and whole lines)."""

from __future__ import annotations

import pytest
import torch

from backend.errors import InvalidRequest
from backend.inference.candidates import amount_candidates, line_candidates, rank_fields
from backend.inference.ranking import candidates_for, rank_document, rankable, string_fields
from backend.labels.conventions import Conventions, FieldConvention

DOC = "KEDAI RUNCIT MAJU\n12 JALAN BESAR\n25/12/2018 8:13 PM\nSUBTOTAL 8.50\nTOTAL RM 9.00\nCASH 10.00"
NAMES = ["company", "date", "total"]
LINES = {"within": 2, "max_lines": 2, "prefixes": False}


def _conventions(lines=LINES) -> Conventions:
    return Conventions(
        {
            "company": FieldConvention(kind="text", lines=lines),
            "date": FieldConvention(kind="date"),
            "total": FieldConvention(kind="amount"),
            "note": FieldConvention(kind="text"),
        }
    )


def test_each_mode_ranks_its_fields():
    conv = _conventions()
    assert rankable(conv, NAMES + ["note"], "typed") == {"date": "date", "total": "amount"}
    assert rankable(conv, NAMES + ["note"], "text") == {"company": "text", "date": "date", "total": "amount"}
    assert rankable(conv, ["total"], "always") == {"total": "amount"}
    assert rankable(_conventions(lines=None), NAMES, "text") == {"date": "date", "total": "amount"}  # no line window
    assert rankable(None, NAMES, "typed") == {}
    with pytest.raises(InvalidRequest, match="rank: got 'best'"):
        rankable(conv, NAMES, "best")


def test_only_fields_that_may_be_strings_are_ranked():
    schema = {
        "type": "object",
        "properties": {
            "company": {"type": "string"},
            "date": {"type": ["string", "null"]},
            "total": {"type": "number"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "items": {"type": "array"},
        },
    }
    assert string_fields(schema) == {"company", "date", "note"}
    assert rankable(_conventions(), NAMES, "text", only=string_fields(schema)) == {"company": "text", "date": "date"}


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


def _prompt(tokenizer) -> list[int]:
    return tokenizer(DOC, add_special_tokens=False)["input_ids"]


def test_typed_keeps_a_printed_value_without_scoring_and_replaces_one_not_printed(tiny):
    model, tokenizer = tiny
    printed = rank_document(
        model,
        tokenizer,
        _prompt(tokenizer),
        NAMES,
        {"company": "X", "date": "25/12/2018", "total": "9.00"},
        DOC,
        _conventions(),
        "typed",
    )
    assert printed["total"] == {"free": "9.00", "best": None, "choice": "9.00", "share": None, "candidates": 0}
    assert printed["date"]["choice"] == "25/12/2018" and "company" not in printed

    values = {"company": "X", "date": "25/12/2018", "total": "77.77"}  # not in the document
    decided = rank_document(model, tokenizer, _prompt(tokenizer), NAMES, values, DOC, _conventions(), "typed")
    expected = rank_fields(
        model,
        tokenizer,
        _prompt(tokenizer),
        NAMES,
        values,
        {"total": ([c.value for c in amount_candidates(DOC)], "amount")},
    )["total"]
    total = decided["total"]
    assert total["choice"] == expected[0][0] and total["choice"] in {"8.50", "9.00", "10.00"}
    assert total["free"] == "77.77" and total["candidates"] == 3 and 0 < total["share"] <= 1


def test_text_mode_lets_the_answer_compete_with_the_line_candidates(tiny):
    model, tokenizer = tiny
    values = {"company": "KEDAI RUNCIT", "date": "25/12/2018", "total": "9.00"}
    decided = rank_document(model, tokenizer, _prompt(tokenizer), NAMES, values, DOC, _conventions(), "text")
    lines = [c.value for c in line_candidates(DOC, **LINES)]
    company = decided["company"]
    assert company["candidates"] == len(set(lines + ["KEDAI RUNCIT"]))
    assert company["choice"] in lines + ["KEDAI RUNCIT"] and company["choice"] == company["best"]
    assert decided["total"]["candidates"] == 0  # typed fields as in "typed"


def test_a_whole_line_answer_is_not_replaced_by_a_shorter_line(tiny):
    model, tokenizer = tiny
    doc = "KEDAI RUNCIT MAJU JAYA ENTERPRISE\nNO 12 JALAN BESAR TAMAN MAJU\nTOTAL 9.00"
    lines = {"within": 2, "max_lines": 2, "prefixes": True}  # prefixes: "KEDAI", "KEDAI RUNCIT", ... compete
    whole = {"company": "KEDAI RUNCIT MAJU JAYA ENTERPRISE", "date": None, "total": "9.00"}
    prompt = tokenizer(doc, add_special_tokens=False)["input_ids"]
    decided = rank_document(model, tokenizer, prompt, NAMES, whole, doc, _conventions(lines), "text")["company"]
    # summed log-probabilities favour short answers: the tiny model's best is a shorter prefix ...
    assert len(decided["best"].split()) < 5
    assert decided["choice"] == whole["company"]  # ... which does not cut a whole-line answer short
    partial = {**whole, "company": "KEDAI RUNCIT MAJU JAYA ENTERPRISE NO"}  # not a line: the best line wins
    decided = rank_document(model, tokenizer, prompt, NAMES, partial, doc, _conventions(lines), "text")["company"]
    assert decided["choice"] == decided["best"] != partial["company"]


def test_a_line_holding_a_learned_stop_is_no_candidate():
    doc = "AIK HUAT HARDWARE\nENTERPRISE (SETIA\nALAM) SDN BHD\n(273500-U)\nTEL: 03-1234 5678\nTOTAL 9.00"
    lines = {"within": 5, "max_lines": 2, "prefixes": False}
    conv = _conventions(lines)
    every = candidates_for(conv, "company", "text", doc)
    assert every == [c.value for c in line_candidates(doc, **lines)]  # no stops learned: every line run
    conv.fields["company"].stops = ["code", "contact"]
    kept = candidates_for(conv, "company", "text", doc)
    assert kept == ["AIK HUAT HARDWARE", "ENTERPRISE (SETIA ALAM) SDN BHD", "ALAM) SDN BHD"]
    conv.fields["company"].stops = ["contact"]  # an unclosed "(" or a number is allowed again, TEL still not
    assert "AIK HUAT HARDWARE ENTERPRISE (SETIA" in candidates_for(conv, "company", "text", doc)
    assert not any("TEL" in c for c in candidates_for(conv, "company", "text", doc))


def test_always_scores_a_printed_amount_too(tiny):
    model, tokenizer = tiny
    values = {"company": "X", "date": "25/12/2018", "total": "9.00"}
    decided = rank_document(model, tokenizer, _prompt(tokenizer), NAMES, values, DOC, _conventions(), "always")
    assert decided["total"]["candidates"] == 3 and decided["total"]["choice"] == decided["total"]["best"]


def test_extraction_with_rank_on_a_trained_adapter(tiny_config, tiny_model, write_jsonl, monkeypatch):
    from backend.inference import candidates
    from backend.inference.bundle import AdapterBundle
    from backend.inference.extraction import Document, encode_chat, extract_many
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec
    from backend.models.adapters import find_adapter
    from backend.training.trainer import train

    shops = [("KEDAI RUNCIT MAJU", "9.00"), ("ACME TOOLS LTD", "1,250.00")]
    docs = [
        {
            "text": f"{shops[i % 2][0]}\nREF {i}\n25/12/2018\nTOTAL {shops[i % 2][1]}",
            "fields": {"company": shops[i % 2][0], "date": "25/12/2018", "total": shops[i % 2][1]},
        }
        for i in range(12)
    ]
    run = train(tiny_config(data=[write_jsonl("docs.jsonl", docs)], max_steps=2), progress_bar=False)
    ref = find_adapter(run.run_dir)
    conventions = Conventions.load(ref.path)
    target = AdapterBundle(ref.base_model, "docs", str(ref.path), str(ref.tokenizer_path))
    doc = Document(DOC, ExtractionSpec.from_names(NAMES))
    pool = ModelPool(device="cpu")

    extend, reads = candidates._extend, []

    def counted(model, cache, ids, start, device):
        reads.append(start)
        return extend(model, cache, ids, start, device)

    monkeypatch.setattr(candidates, "_extend", counted)
    fp32 = ModelPool(device="cpu", dtype="float32")  # bf16 sums a batch in another order than a lone read
    kept = extract_many(fp32, target, [doc], rank="text")[0]
    assert any(d["candidates"] for d in kept["ranking"].values())
    assert 0 not in reads  # scoring went on from the prompt as decoding read it, never read it again
    with fp32.using(target) as (model, tokenizer, _):  # the same decisions as from a prompt read anew
        anew = rank_document(
            model,
            tokenizer,
            encode_chat(tokenizer, doc.spec.messages(DOC)),
            NAMES,
            kept["model_fields"],
            DOC,
            conventions,
            "text",
        )
    assert reads.count(0) == 1
    for field, d in kept["ranking"].items():
        assert {k: v for k, v in d.items() if k != "share"} == {k: v for k, v in anew[field].items() if k != "share"}
        assert d["share"] == pytest.approx(anew[field]["share"], abs=1e-4)
    out = extract_many(pool, target, [doc], rank="text")[0]
    assert set(out["ranking"]) == set(rankable(conventions, NAMES, "text")) == {"company", "date", "total"}
    chosen = dict(out["model_fields"])
    for field, d in out["ranking"].items():
        assert d["free"] == out["model_fields"][field]
        if d["choice"] != d["free"]:
            chosen[field] = d["choice"]
            assert out["confidence"][field] == d["share"]
            assert field in out["review"]  # a value ranking chose goes to a person, whatever its share
    assert out["fields"] == conventions.apply(chosen, DOC)
    assert "ranking" not in extract_many(pool, target, [doc], rank=False)[0]  # off when asked
    by_default = extract_many(pool, target, [doc])[0]  # an adapter with label conventions: typed
    typed = extract_many(pool, target, [doc], rank="typed")[0]
    assert set(by_default["ranking"]) == {"date", "total"} and by_default["fields"] == typed["fields"]
    assert "ranking" not in extract_many(pool, AdapterBundle(tiny_model), [doc])[0]  # none: no ranking
    per_doc = extract_many(pool, target, [Document(DOC, doc.spec, rank="typed")])[0]
    assert set(per_doc["ranking"]) == {"date", "total"}
    numeric = {
        "type": "object",
        "properties": {"company": {"type": "string"}, "date": {"type": "string"}, "total": {"type": "number"}},
        "required": NAMES,
    }
    typed_total = extract_many(pool, target, [Document(DOC, ExtractionSpec.of(numeric))], rank="typed")[0]
    assert set(typed_total["ranking"]) == {"date"}  # a number field keeps its decoded number

    from agents.models import EngineModel  # the agents' in-process engine passes rank through

    schema = {"type": "object", "properties": {n: {"type": "string"} for n in NAMES}, "required": NAMES}
    agent = EngineModel(adapter=str(run.run_dir), device="cpu", rank="typed").extract(DOC, schema)
    direct = extract_many(pool, target, [Document(DOC, ExtractionSpec.of(schema))], rank="typed")[0]
    assert agent.fields == direct["fields"] and "ranking" in direct

    # `tunebridge eval --constrained --rank` scores what serving returns (ranked, conventions applied)
    import json

    from backend.cli import main
    from backend.scoring.metrics import score_document, summarize

    gold = {"company": "KEDAI RUNCIT MAJU", "date": "25/12/2018", "total": "9.00"}
    data = write_jsonl("eval.jsonl", [{"text": DOC, "fields": gold}])
    assert (
        main(
            [
                "eval",
                "--data",
                data,
                "--adapter",
                str(run.run_dir),
                "--no-base",
                "--constrained",
                "--rank",
                "typed",
                "--out",
                str(run.run_dir / "eval"),
            ]
        )
        == 0
    )
    tuned = json.loads((run.run_dir / "eval" / "eval.json").read_text())["candidates"][run.run_dir.name]
    served = extract_many(pool, target, [doc], rank="typed")[0]
    assert tuned["predictions"][0]["fields"] == served["fields"] and tuned["predictions"][0]["raw"] == served["raw"]
    expected = summarize([score_document(0, json.dumps(served["fields"]), gold, NAMES, DOC)], NAMES)
    assert tuned["extraction"]["micro"] == expected["micro"] and tuned["extraction"]["json_valid"] == 1.0
    assert tuned["extraction"]["rank"] == "typed"
    assert main(["eval", "--data", data, "--adapter", str(run.run_dir), "--rank", "typed"]) == 2  # not constrained
    plain = ["eval", "--data", data, "--adapter", str(run.run_dir), "--no-base", "--constrained"]
    assert main([*plain, "--out", str(run.run_dir / "eval-default")]) == 0
    default = json.loads((run.run_dir / "eval-default" / "eval.json").read_text())["candidates"][run.run_dir.name]
    assert default["extraction"]["rank"] == "typed" and default["predictions"] == tuned["predictions"]
    assert main([*plain, "--rank", "none", "--out", str(run.run_dir / "eval-none")]) == 0
    unranked = json.loads((run.run_dir / "eval-none" / "eval.json").read_text())["candidates"][run.run_dir.name]
    assert unranked["extraction"]["rank"] is None
    assert unranked["predictions"][0]["fields"] == extract_many(pool, target, [doc], rank=False)[0]["fields"]

    with pytest.raises(InvalidRequest, match="rank: got 'best'"):
        extract_many(pool, target, [doc], rank="best")
    with pytest.raises(InvalidRequest, match="has no label conventions"):
        extract_many(pool, AdapterBundle(tiny_model), [doc], rank="typed")
