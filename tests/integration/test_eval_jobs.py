"""Eval jobs through the real service, the promotion policy, and `tunebridge eval` on a run folder."""

from __future__ import annotations

import json

import httpx
import pytest

from backend.evaluation.policy import PromotionPolicy, decide
from servers import wait_for

DOCS = [
    {
        "text": "ACME Tools Ltd\nInvoice 2024-117\nDate: 03/05/2024\nTotal due: 1,250.00",
        "fields": {"company": "ACME Tools Ltd", "date": "03/05/2024", "total": "1,250.00"},
    },
    {
        "text": "Kedai Runcit Maju\n12 Jalan Besar\n25/12/2018 8:13 PM\nTOTAL RM 9.00",
        "fields": {"company": "Kedai Runcit Maju", "date": "25/12/2018", "total": "9.00"},
    },
]
LEARN = {
    "max_steps": 80,
    "batch_size": 1,
    "learning_rate": 0.02,
    "report_to": "none",
    "precision": "fp32",
    "val_fraction": 0.0,
    "save_every": 0,
    "warmup_ratio": 0.0,
}


def _summary(f1: float, fields: dict[str, float]) -> dict:
    return {"micro": {"f1": f1}, "fields": {k: {"f1": v} for k, v in fields.items()}}


def test_policy_promotes_when_better_and_refuses_a_field_regression():
    incumbent = _summary(0.80, {"company": 0.9, "total": 0.7})
    better = decide(_summary(0.85, {"company": 0.88, "total": 0.82}), incumbent, PromotionPolicy(min_gain=0.02))
    assert better["promote"] and better["gain"] == pytest.approx(0.05)
    regress = decide(_summary(0.86, {"company": 0.70, "total": 1.0}), incumbent, PromotionPolicy(max_field_drop=0.05))
    assert not regress["promote"] and regress["reasons"] == ["field 'company' F1 drops by 0.2000 (> 0.0500)"]
    small = decide(_summary(0.81, {"company": 0.9, "total": 0.72}), incumbent, PromotionPolicy(min_gain=0.02))
    assert not small["promote"] and "below the required +0.0200" in small["reasons"][0]
    first = decide(_summary(0.1, {"company": 0.1}), None, PromotionPolicy(alias="prod"))
    assert first["promote"] and first["reasons"] == ["no version holds @prod yet"]


def _post_job(service, body: dict) -> dict:
    created = httpx.post(f"{service['url']}/v1/jobs", json=body, headers=service["auth"])
    assert created.status_code == 202, created.text
    return created.json()


def _wait_job(service, job_id: str) -> dict:
    job = wait_for(
        lambda: (
            (j := httpx.get(f"{service['url']}/v1/jobs/{job_id}", headers=service["auth"]).json())["status"]
            in ("succeeded", "failed", "cancelled")
            and j
        ),
        timeout=300,
    )
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.fixture(scope="module")
def trained(service):
    body = "\n".join(json.dumps(d) for d in DOCS).encode()
    for name in ("rx", "rx-eval"):
        assert (
            httpx.post(
                f"{service['url']}/v1/datasets/{name}/examples", content=body, headers=service["auth"]
            ).status_code
            == 201
        )
    job = _wait_job(service, _post_job(service, {"kind": "train", "dataset": "rx", "hyperparameters": LEARN})["id"])
    assert job["result"]["adapter"] == "rx@1"
    return job


def test_an_eval_job_compares_the_base_and_the_adapter(service, trained):
    job = _wait_job(
        service,
        _post_job(service, {"kind": "eval", "dataset": "rx-eval", "hyperparameters": {"adapters": ["rx@1"]}})["id"],
    )
    base, tuned = job["result"]["candidates"]["base"], job["result"]["candidates"]["rx@1"]
    assert tuned["micro_f1"] == 1.0 and tuned["schema_valid"] == 1.0 and base["micro_f1"] < 0.5
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 4  # 2 documents x 2 models
    report = httpx.get(f"{service['url']}/v1/jobs/{job['id']}/artifacts/report.md", headers=service["auth"]).text
    assert "| base |" in report and "| rx@1 | 1.000 |" in report and "eval.png" in report
    png = httpx.get(f"{service['url']}/v1/jobs/{job['id']}/artifacts/eval.png", headers=service["auth"])
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    data = httpx.get(f"{service['url']}/v1/jobs/{job['id']}/artifacts/eval.json", headers=service["auth"]).json()
    assert data["candidates"]["rx@1"]["extraction"]["fields"]["total"]["correct"] == 2
    missing = httpx.get(f"{service['url']}/v1/jobs/{job['id']}/artifacts/secrets.txt", headers=service["auth"])
    assert missing.status_code == 404 and "unknown" in missing.json()["error"]


def test_eval_gated_promotion_promotes_when_not_worse_and_refuses_a_regression(service, trained):
    url, auth = service["url"], service["auth"]
    assert httpx.put(f"{url}/v1/adapters/rx/aliases/prod", json={"version": 1}, headers=auth).status_code == 200
    promote = {"dataset": "rx-eval", "alias": "prod", "min_gain": 0.0, "max_field_drop": 0.05}
    good = _wait_job(
        service,
        _post_job(service, {"kind": "train", "dataset": "rx", "hyperparameters": LEARN, "promote": promote})["id"],
    )
    gate = _wait_job(service, good["result"]["promotion_job"])
    decision = gate["result"]["promotion"]
    assert decision["promote"] and decision["candidate"] == "rx@2" and decision["incumbent"] == "rx@1"
    assert httpx.get(f"{url}/v1/adapters/rx@prod", headers=auth).json()["id"] == "rx@2"

    weak = {**LEARN, "max_steps": 1}
    bad = _wait_job(
        service,
        _post_job(service, {"kind": "train", "dataset": "rx", "hyperparameters": weak, "promote": promote})["id"],
    )
    refused = _wait_job(service, bad["result"]["promotion_job"])["result"]["promotion"]
    assert not refused["promote"] and any("drops by" in r for r in refused["reasons"])
    assert httpx.get(f"{url}/v1/adapters/rx@prod", headers=auth).json()["id"] == "rx@2"
    stored = httpx.get(f"{url}/v1/adapters/rx@3", headers=auth).json()["promotion"]
    assert stored["promote"] is False and stored["incumbent"] == "rx@2" and stored["candidate_f1"] < 1.0
    history = httpx.get(f"{url}/v1/adapters/rx/aliases/prod", headers=auth).json()["history"]
    assert history[0]["version"] == 2 and history[0]["reason"].startswith("eval-gated: micro-F1 gain")


@pytest.mark.parametrize(
    "body,message",
    [
        (
            {"kind": "eval", "dataset": "rx-eval", "hyperparameters": {"adapters": [], "include_base": False}},
            "nothing to evaluate",
        ),
        ({"kind": "eval", "dataset": "rx-eval", "hyperparameters": {"adapterz": ["rx"]}}, "unknown eval option(s)"),
        (
            {
                "kind": "eval",
                "dataset": "rx-eval",
                "hyperparameters": {"adapters": ["rx@1", "rx@2"], "promote": {"alias": "prod"}},
            },
            "exactly one adapter",
        ),
        ({"kind": "train", "dataset": "rx", "promote": {"alias": "prod"}}, "promote.dataset"),
        ({"kind": "train", "dataset": "rx", "promote": {"dataset": "rx-eval", "max_field_drop": 7}}, "max_field_drop"),
    ],
)
def test_bad_eval_requests_say_what_is_wrong(service, trained, body, message):
    response = httpx.post(f"{service['url']}/v1/jobs", json=body, headers=service["auth"])
    assert response.status_code == 422 and message in response.json()["error"], response.text


def test_cli_eval_compares_base_and_a_run_folder(tiny_config, tmp_path, write_jsonl, capsys):
    from backend.cli import main
    from backend.training.trainer import train

    data = write_jsonl("docs.jsonl", DOCS)
    run = train(
        tiny_config(
            data=[data],
            **{k: v for k, v in LEARN.items() if k not in ("report_to", "precision", "val_fraction", "save_every")},
        ),
        progress_bar=False,
    )
    out = tmp_path / "eval"
    assert main(["eval", "--data", data, "--adapter", str(run.run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{run.run_dir.name}: micro-F1 1.000" in printed and "base: micro-F1" in printed
    result = json.loads((out / "eval.json").read_text())
    assert set(result["candidates"]) == {"base", run.run_dir.name}
    assert (out / "report.md").read_text().count("| base |") >= 2 and (out / "eval.png").is_file()


def test_cli_eval_on_chat_data_reports_loss_perplexity_and_token_f1(tiny_model, tmp_path, capsys):
    import math

    from backend.cli import main
    from conftest import EXAMPLES

    out = tmp_path / "chat-eval"
    assert (
        main(
            [
                "eval",
                "--data",
                str(EXAMPLES / "chat.jsonl"),
                "--model",
                tiny_model,
                "--out",
                str(out),
                "--max-new-tokens",
                "16",
            ]
        )
        == 0
    )
    answers = json.loads((out / "eval.json").read_text())["candidates"]["base"]["answers"]
    assert answers["answers"] == 4 and answers["loss"] > 0
    assert answers["perplexity"] == pytest.approx(math.exp(answers["loss"]))
    assert 0 <= answers["token_f1"] <= 1 and answers["exact_match"] == 0.0  # a random model
    assert "## Chat / instruction answers" in (out / "report.md").read_text()
    assert "base: loss" in capsys.readouterr().out


def test_cli_eval_constrained_reports_calibration(tiny_config, tmp_path, write_jsonl, capsys):
    from backend.cli import main
    from backend.training.trainer import train

    data = write_jsonl("docs.jsonl", DOCS)
    run = train(
        tiny_config(data=[data], max_steps=80, batch_size=1, learning_rate=0.02, warmup_ratio=0.0), progress_bar=False
    )
    out = tmp_path / "eval"
    assert main(["eval", "--data", data, "--adapter", str(run.run_dir), "--out", str(out), "--constrained"]) == 0
    tuned = json.loads((out / "eval.json").read_text())["candidates"][run.run_dir.name]
    assert tuned["extraction"]["micro"]["f1"] == 1.0 and tuned["extraction"]["json_valid"] == 1.0
    assert tuned["extraction"]["calibration"]["predictions"] == 6
    assert all(set(p["confidence"]) == {"company", "date", "total"} for p in tuned["predictions"])
    base = json.loads((out / "eval.json").read_text())["candidates"]["base"]["extraction"]
    assert base["json_valid"] == 1.0 and base["schema_valid"] == 1.0  # constrained: even a random model
    assert "ECE" in capsys.readouterr().out and "Confidence calibration" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "lines,args,message",
    [
        (['{"text": "a", "fields": {"x": "1"}}', "{oops"], [], "docs.jsonl:2: invalid JSON"),
        ([], [], "no examples to evaluate"),
        (['{"text": "a", "fields": {"x": "1"}}'], ["--adapter", "no/such/run"], "no such folder"),
        (['{"text": "a", "fields": {"x": "1"}}'], ["--no-base"], "nothing to evaluate"),
    ],
)
def test_cli_eval_refuses_bad_input_with_a_clear_error(tmp_path, write_jsonl, capsys, lines, args, message):
    from backend.cli import main

    data = write_jsonl("docs.jsonl", lines)
    assert main(["eval", "--data", data, "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
