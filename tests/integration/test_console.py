"""The web console on the real service (tiny model): refused without a key, a document's markup shown
as text, and an analyst's round in headless Chromium — log in, train and watch the curve, read the
evaluation report, promote, upload data, review a held document into the corrections dataset.
TUNEBRIDGE_SCREENSHOTS=docs/console saves a PNG of each page there."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from console_helpers import CHROMIUM_FLAGS, chromium_path, hold_documents
from servers import tiny_service

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "documents"

ROOT = Path(__file__).resolve().parents[2]
RECEIPT = "THE COPPER KETTLE CAFE\n3 Market Square, Cambridge\nDate: 21/11/2026\nLatte 3.20\nTOTAL 18.40\n"
HOSTILE = "<script>window.pwned = 1</script> Bazaar\nTOTAL 5.00\n"
DOCUMENTS = {
    "copper_kettle.txt": (
        RECEIPT,
        {
            "company": "THE COPPER KETTLE CAFE",
            "date": "21/11/2026",
            "address": "3 Market Square, Cambridge",
            "total": "18.40",
        },
    ),
    "hostile.txt": (
        HOSTILE,
        {"company": "<script>window.pwned = 1</script> Bazaar", "date": None, "address": None, "total": "5.00"},
    ),
}
TRAIN = [
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
    "max_steps": 24,
    "batch_size": 1,
    "learning_rate": 0.02,
    "report_to": "none",
    "precision": "fp32",
    "val_fraction": 0.0,
    "save_every": 0,
    "warmup_ratio": 0.0,
    "log_every": 1,
}
PAGES = [
    "/console",
    "/console/jobs",
    "/console/adapters",
    "/console/adapters/compare?a=x&b=y",
    "/console/datasets",
    "/console/datasets/rx",
    "/console/review",
    "/console/review/0123456789abcdef",
    "/console/review/0123456789abcdef/pages/1.png",
    "/console/jobs/nope",
]
DATA = ["/console/data/jobs/nope", "/console/data/jobs/nope/events", "/console/data/jobs/nope/artifacts/eval.png"]
FORMS = [
    "/console/jobs",
    "/console/jobs/nope/cancel",
    "/console/jobs/nope/resume",
    "/console/adapters/rx/aliases",
    "/console/adapters/rx/aliases/prod/rollback",
    "/console/datasets",
    "/console/review/0123456789abcdef",
]


@pytest.fixture(scope="module")
def console(tmp_path_factory, tiny_model):
    """The real service on a data folder that holds two documents for review (one with markup)."""
    data_dir = tmp_path_factory.mktemp("console-data")
    ids = hold_documents(data_dir, DOCUMENTS)
    with tiny_service(data_dir, tiny_model) as running:
        yield {**running, "documents": dict(zip(DOCUMENTS, ids))}


@contextmanager
def _login(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service["url"], headers={"Origin": service["url"]}, timeout=60) as client:
        assert client.post("/console/login", data={"key": service["key"]}).status_code == 303
        yield client


def test_without_a_valid_key_every_page_data_call_and_form_is_refused(console):
    url = console["url"]
    for cookies in ({}, {"tunebridge_console": "tb_00000000_forged"}):
        with httpx.Client(base_url=url, cookies=cookies, headers={"Origin": url}) as client:
            for path in PAGES:
                answer = client.get(path)
                assert answer.status_code == 303, path
                assert answer.headers["location"].startswith("/console/login?next=/console"), path
            for path in DATA:
                assert client.get(path).status_code == 401, path
            for path in FORMS:
                answer = client.post(path, data={"dataset": "rx", "alias": "prod", "version": "1", "name": "rx"})
                assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login"), path
    assert httpx.get(f"{url}/v1/jobs", headers=console["auth"]).json() == []  # no form did anything
    wrong = httpx.post(f"{url}/console/login", data={"key": "tb_nope"}, headers={"Origin": url})
    assert wrong.status_code == 401 and "not valid" in wrong.text and "set-cookie" not in wrong.headers
    assert httpx.get(f"{url}/", follow_redirects=False).headers["location"] == "/console"


def test_forms_from_another_origin_are_refused_and_the_cookie_is_strict(console):
    with _login(console) as client:
        cookie = client.post("/console/login", data={"key": console["key"]}).headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "expires" not in cookie
        assert client.get("/console/jobs").status_code == 200
        for origin in ("http://evil.example", ""):
            forged = client.post("/console/jobs", data={"dataset": "rx"}, headers={"Origin": origin})
            assert forged.status_code == 403 and "accepted from" in forged.json()["error"]
    assert httpx.get(f"{console['url']}/v1/jobs", headers=console["auth"]).json() == []


def test_markup_in_a_document_is_shown_as_text(console):
    with _login(console) as client:
        page = client.get(f"/console/review/{console['documents']['hostile.txt']}")
    assert page.status_code == 200
    assert "<script>window.pwned" not in page.text
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt; Bazaar" in page.text  # in the text and the field's input
    assert "default-src 'self'" in page.headers["content-security-policy"]  # and no inline script would run


def test_a_pdf_is_reviewed_beside_a_picture_of_its_page(tmp_path, tiny_model):
    pdf = EXAMPLES / "receipt_01_copper_kettle.pdf"
    fields = json.loads(pdf.with_suffix(".json").read_text())["fields"]
    [doc_id] = hold_documents(tmp_path, {"copper_kettle.pdf": (pdf.read_bytes(), fields)})
    with tiny_service(tmp_path, tiny_model) as running, _login(running) as client:
        page = client.get(f"/console/review/{doc_id}")
        assert f'<img src="/console/review/{doc_id}/pages/1.png" alt="page 1"' in page.text
        assert '<mark data-field="company" title="company">THE COPPER KETTLE CAFE</mark>' in page.text
        picture = client.get(f"/console/review/{doc_id}/pages/1.png")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        drawn = Image.open(io.BytesIO(picture.content))
        assert drawn.height > drawn.width > 400  # the receipt page at 144 dpi: legible
        missing = client.get(f"/console/review/{doc_id}/pages/2.png")
        assert missing.status_code == 404 and "has no page 2 (it has 1 page image)" in missing.text


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    executable = chromium_path()
    if executable is None:
        why = "no Chromium: `make test` installs Debian's chromium (or set CHROMIUM=<binary>)"
        if os.environ.get("TUNEBRIDGE_REQUIRE_BROWSER"):  # CI installs it: a missing one is a failure there
            pytest.fail(f"TUNEBRIDGE_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


def _shot(page, name: str) -> None:
    folder = os.environ.get("TUNEBRIDGE_SCREENSHOTS")
    if folder:
        target = Path(folder) if Path(folder).is_absolute() else ROOT / folder
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def test_an_analysts_round_in_the_browser(console, browser, tmp_path):
    from playwright import sync_api

    url, auth = console["url"], console["auth"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/console/jobs")
    assert page.url.startswith(f"{url}/console/login")
    _shot(page, "login")
    page.fill("input[name=key]", console["key"])
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{url}/console/jobs")

    # Data: a file with a bad line shows its line error; a good one becomes a dataset.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(TRAIN[0]) + '\n{"text": 3}\n')
    page.goto(f"{url}/console/datasets")
    page.fill("input[name=name]", "rx")
    page.set_input_files("input[name=file]", str(bad))
    page.click("button:has-text('Upload')")
    assert "bad.jsonl" in page.inner_text("#line-errors") and "2" in page.inner_text("#line-errors td:nth-child(2)")
    good = tmp_path / "rx.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in TRAIN))
    page.set_input_files("input[name=file]", str(good))
    page.click("button:has-text('Upload')")
    page.wait_for_url(f"{url}/console/datasets/rx*")
    assert page.inner_text("#example-count") == "2" and "company" in page.inner_text("main")
    _shot(page, "dataset")

    # Train with the gate, watch the curve grow, read the evaluation report.
    page.goto(f"{url}/console/jobs")
    page.select_option("select[name=dataset]", "rx")
    page.fill("textarea[name=hyperparameters]", json.dumps(LEARN))
    page.fill("input[name=gate_alias]", "prod")
    page.select_option("select[name=gate_dataset]", "rx")
    page.click("button:has-text('Start training')")
    page.wait_for_url(f"{url}/console/jobs/*")
    sync_api.expect(page.locator("#job-status")).to_have_text("succeeded", timeout=300_000)
    page.wait_for_selector("#eval-link")
    steps = int(page.get_attribute("#chart-loss polyline", "data-points"))
    assert steps == LEARN["max_steps"]  # a point per logged step
    assert page.get_attribute("#chart-tps polyline", "data-points") == str(steps)
    _shot(page, "job")
    page.click("#eval-link")
    sync_api.expect(page.locator("#job-status")).to_have_text("succeeded", timeout=300_000)
    page.wait_for_selector("#report")
    report = page.inner_text("table.report")
    assert "rx@1" in report and "company" in report and "promoted" in page.inner_text(".gate")
    _shot(page, "report")

    # Adapters: the gate put @prod on version 1; promote it to staging by hand.
    page.goto(f"{url}/console/adapters")
    page.fill("tr[id='rx@1'] input[name=alias]", "staging")
    page.fill("tr[id='rx@1'] input[name=reason]", "checked by hand")
    page.click("tr[id='rx@1'] button:has-text('Promote')")
    assert "rx@staging now points at version 1" in page.inner_text(".notice")
    assert "checked by hand" in page.inner_text("main") and "eval-gated" in page.inner_text("main")
    state = httpx.get(f"{url}/v1/adapters/rx/aliases/staging", headers=auth).json()
    assert state["version"] == 1 and state["history"][0]["reason"] == "checked by hand"
    _shot(page, "adapters")
    page.goto(f"{url}/console/adapters/compare?a=rx@1&b=rx@prod")
    assert "company" in page.inner_text("table.report")
    _shot(page, "compare")

    # Review: the fields are marked at their spans; a corrected total lands in the corrections dataset.
    page.goto(f"{url}/console/review")
    rows = page.locator("table tbody tr")
    assert rows.count() == 2
    # Most informative first: the document whose date and address are nowhere in its text leads.
    assert rows.nth(0).inner_text().startswith("hostile.txt") and "not in the text" in rows.nth(0).inner_text()
    _shot(page, "review")
    page.click("a:has-text('copper_kettle.txt')")
    marks = {m.get_attribute("data-field"): m.inner_text() for m in page.locator("mark").all()}
    assert marks == {
        "company": "THE COPPER KETTLE CAFE",
        "address": "3 Market Square, Cambridge",
        "date": "21/11/2026",
        "total": "18.40",
    }
    page.click("mark[data-field=total]")
    assert page.locator("tr.active").get_attribute("data-field") == "total"
    _shot(page, "document")
    page.fill("input[name='field:total']", "18.50")
    page.select_option("select[name=decision]", "approve")
    page.fill("input[name=reviewer]", "ana")
    page.click("button:has-text('Submit review')")
    assert "reviewed: approve" in page.inner_text(".notice")
    record = httpx.get(f"{url}/v1/documents/{console['documents']['copper_kettle.txt']}", headers=auth).json()
    assert record["status"] == "reviewed" and record["fields"]["total"] == "18.50"
    assert record["review"]["reviewer"] == "ana"
    stats = httpx.get(f"{url}/v1/datasets/corrections-receipt", headers=auth).json()
    assert stats["examples"] == 1
    example = (console["data_dir"] / "datasets" / "corrections-receipt.jsonl").read_text()
    assert '"total": "18.50"' in example

    # The document with markup: shown as text, its script never ran.
    page.goto(f"{url}/console/review/{console['documents']['hostile.txt']}")
    assert "<script>window.pwned = 1</script> Bazaar" in page.inner_text("#doc-text")
    assert page.evaluate("window.pwned") is None
    page.close()
