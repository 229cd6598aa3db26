"""`tunebridge extract` and `tunebridge review`: the document graph from the command line.

    tunebridge extract examples/documents --adapter runs/<run> --out results.jsonl
    tunebridge review list
    tunebridge review list --by value --data-dir data   # the documents whose labels teach most first
    tunebridge review resume <id> --corrections fixes.json        # or answer the prompts

Each document is a LangGraph thread (its id: the first 16 hex digits of the file's SHA-256), checkpointed
in `--db` (default runs/agents/agents.sqlite): a document held for review stays there, across
restarts, until `review resume` continues it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from backend.errors import InvalidRequest

SUFFIXES = {".pdf", ".txt", ".md", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
FOLDER_SUFFIXES = SUFFIXES - {".md"}  # a folder's README is not a document; name .md files to include them
DEFAULT_DB = "runs/agents/agents.sqlite"


def add_commands(sub) -> None:
    p = sub.add_parser(
        "extract",
        help="documents → validated, grounded, decided records (the agents' graph); doubtful ones are held for review",
        description="Extract fields from financial documents, validate them, apply the decision "
        "policy, and hold doubtful documents for a person (tunebridge review).",
    )
    p.add_argument("paths", nargs="+", help="files or folders (pdf, txt, md, png, jpg, tif)")
    p.add_argument(
        "--type",
        choices=["invoice", "receipt", "bank_statement", "kyc"],
        help="skip classification: every document is of this type",
    )
    p.add_argument("--schema", help="a JSON Schema file to extract instead of the built-in types")
    _model_flags(p)
    p.add_argument("--policy", help="decision policy YAML (default: agents/policies/default.yaml)")
    p.add_argument("--out", default="runs/agents/results.jsonl", help="one JSON record per document")
    p.add_argument("--max-repairs", type=int, default=2, help="re-asks after validation errors")
    p.add_argument("--rerun", action="store_true", help="process documents seen before again")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("review", help="list documents held for review, show one, or resume it with corrections")
    p.add_argument(
        "action",
        choices=["list", "show", "resume", "flush"],
        help="flush: send queued corrections to the labelled-data webhook",
    )
    p.add_argument("id", nargs="?", help="document id (from `review list`)")
    p.add_argument(
        "--corrections",
        help='JSON file: {"fields": {"total": 12.5, "vendor.name": "..."}, '
        '"decision": "approve|review|reject", "note": "..."}; without it, prompts',
    )
    p.add_argument("--reviewer", help="who reviewed (recorded)")
    p.add_argument(
        "--by",
        choices=["time", "value"],
        default="time",
        help="list order: time = oldest first; value = the documents whose corrections would teach the model "
        "most first (low confidence, disagreement, values not in the text, validator failures, and, with "
        "--data-dir, senders unlike the corrections dataset's examples), with the score and its top reason",
    )
    _model_flags(p)
    p.add_argument("--policy", help="decision policy YAML")
    p.set_defaults(func=cmd_review)


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adapter",
        help="adapter: a run folder (in-process engine), or with --service-url a registry reference (name, name@prod)",
    )
    p.add_argument("--model", help="base model (in-process) or model name (--openai-url)")
    p.add_argument("--service-url", help="use the tunebridge service at this URL (e.g. http://127.0.0.1:8000)")
    p.add_argument("--api-key", help="its API key (or TUNEBRIDGE_API_KEY)")
    p.add_argument("--openai-url", help="use any OpenAI-compatible server (vLLM, Ollama), e.g. http://host:8000/v1")
    p.add_argument(
        "--db", help=f"the agents' state and review checkpoints (SQLite; default {DEFAULT_DB}, or in --data-dir)"
    )
    p.add_argument(
        "--data-dir",
        help="the service's data folder: use the review store `tunebridge serve` keeps there (agents.sqlite), "
        "so documents held by /v1/documents are listed and resumed here, and the other way round",
    )
    p.add_argument("--webhook-url", help="labelled-data webhook for reviewer corrections (or TUNEBRIDGE_WEBHOOK_URL)")
    p.add_argument("--webhook-secret", help="its secret (or TUNEBRIDGE_WEBHOOK_SECRET)")
    p.add_argument("--dataset", default="corrections", help="dataset the corrections go to")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--rank",
        choices=["typed", "text", "none"],
        help="candidate ranking after decoding (an adapter trained on extraction data): typed (its "
        "default) = amounts and dates the document does not print are replaced by printed ones; text = "
        "also names and addresses printed as whole lines (slower); none = the decoded answer as it is",
    )


def build_model(args: argparse.Namespace):
    import os

    from agents.models import EngineModel, OpenAIModel, ServiceModel

    rank: str | Literal[False] | None = False if args.rank == "none" else args.rank  # None: the engine's default
    if args.service_url:
        return ServiceModel(
            args.service_url,
            api_key=args.api_key or os.environ.get("TUNEBRIDGE_API_KEY"),
            model=args.adapter or args.model,
            rank=rank,
        )
    if args.openai_url:
        if rank:
            raise SystemExit("--rank needs tunebridge's engine (in-process or --service-url), not --openai-url")
        if not args.model:
            raise SystemExit("--openai-url needs --model (the served model's name)")
        return OpenAIModel(args.openai_url, model=args.model, api_key=args.api_key)
    return EngineModel(adapter=args.adapter, model=args.model, device=args.device, rank=rank)


def open_runtime(args: argparse.Namespace, *, model=None):
    """(graph, store, deps) for these flags."""
    import os
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from agents.feedback import Webhook
    from agents.graph import Deps, build_graph
    from agents.policy import Policy
    from agents.store import Store

    store = Store(args.db)
    url = args.webhook_url or os.environ.get("TUNEBRIDGE_WEBHOOK_URL")
    secret = args.webhook_secret or os.environ.get("TUNEBRIDGE_WEBHOOK_SECRET")
    webhook = Webhook(url, secret, args.dataset) if url and secret else None
    schema = None
    if getattr(args, "schema", None):
        try:
            schema = json.loads(Path(args.schema).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"--schema {args.schema}: {exc}") from exc
    deps = Deps(
        model=model or build_model(args),
        policy=Policy.load(args.policy),
        store=store,
        webhook=webhook,
        max_repairs=getattr(args, "max_repairs", 2),
        schema=schema,
    )
    saver = SqliteSaver(sqlite3.connect(str(store.path), check_same_thread=False))
    return build_graph(deps, saver), store, deps


def expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file())
        else:
            out.append(path)
    return out


def review_store(args: argparse.Namespace) -> str:
    """Where --db and --data-dir put the agents' store (the service keeps its own in its data folder)."""
    if args.db and args.data_dir:
        raise InvalidRequest("give --db or --data-dir, not both (--data-dir means --db DATA_DIR/agents.sqlite)")
    from agents.store import SERVICE_FILE

    return args.db or (str(Path(args.data_dir) / SERVICE_FILE) if args.data_dir else DEFAULT_DB)


def cmd_extract(args: argparse.Namespace) -> int:
    args.db = review_store(args)
    files = expand(args.paths)
    if not files:
        print("no documents found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    graph, store, _ = open_runtime(args)
    records, report = run_documents(graph, store, files, out=Path(args.out), doc_type=args.type, rerun=args.rerun)
    print(summary_table(records))
    print(f"records: {args.out}\nreport: {report}\nreviews: tunebridge review list --db {args.db}")
    failed = sum(r.get("status") == "failed" for r in records)
    if failed:  # the reasons were printed as they happened, and are in the records
        print(
            f"error: {failed} of {len(files)} documents failed (their records in {args.out} say why)", file=sys.stderr
        )
        return 2
    return 0


def run_documents(
    graph,
    store,
    files: list[Path],
    *,
    out: Path,
    doc_type: str | None = None,
    rerun: bool = False,
    deadline: float | None = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Every file through the graph, with a progress bar; records written to `out` as they finish,
    and a markdown report beside it. With a `deadline` (time.monotonic()), no document is started
    after it: the ones done are returned."""
    import time

    from tqdm import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    with out.open("w") as sink:
        for path in tqdm(files, unit="doc", desc="documents"):
            if deadline is not None and time.monotonic() >= deadline:
                tqdm.write(f"time budget reached: {len(records)} of {len(files)} documents done")
                break
            record = run_one(graph, store, path, doc_type=doc_type, rerun=rerun)
            if record.get("status") == "failed":
                tqdm.write(f"{path}: {record['error']}", file=sys.stderr)
            records.append(record)
            sink.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            sink.flush()
    return records, write_report(records, out.with_name(out.stem + "-report.md"))


def run_one(graph, store, path: Path, *, doc_type: str | None = None, rerun: bool = False) -> dict[str, Any]:
    """Run (or report) one document; its record, with status done | reviewed | pending_review | failed."""
    from agents.graph import process, record
    from agents.intake import IntakeError, file_sha256

    try:
        doc_id = file_sha256(path)[:16]
    except (IntakeError, OSError) as exc:
        return {"path": str(path), "status": "failed", "error": str(exc)}
    thread = doc_id
    if rerun and graph.get_state({"configurable": {"thread_id": doc_id}}).values:
        thread = f"{doc_id}-{len(store.threads_of(doc_id)) + 1}"
    try:
        state, before = process(graph, store, path, thread_id=thread, doc_type=doc_type)
    except InvalidRequest as exc:  # this document (unreadable, too long for the model): the others go on
        return {"path": str(path), "doc_id": doc_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {**record(state), "cached": True} if before else record(state)


def summary_table(records: list[dict[str, Any]]) -> str:
    decisions = Counter(r.get("decision") or "-" for r in records)
    statuses = Counter(r.get("status") or "-" for r in records)
    rows = [("document", "type", "decision", "status", "flags", "rules fired")]
    for r in records:
        rows.append(
            (
                Path(r["path"]).name[:34],
                str(r.get("doc_type") or "-"),
                str(r.get("decision") or "-"),
                str(r.get("status")),
                str(len(r.get("flags") or [])),
                ", ".join(f["rule"] for f in r.get("fired") or [])[:40] or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    fields = sum(len({f.get("field") for f in r.get("flags") or [] if f.get("field")}) for r in records)
    lines.append(
        f"\n{len(records)} documents: "
        + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items()))
        + "; status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        + f"; {fields} fields need review"
    )
    return "\n".join(lines)


def write_report(records: list[dict[str, Any]], path: Path) -> Path:
    lines = [
        "# Document run",
        "",
        "| document | type | decision | status | confidence | reasons |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        reasons = (
            "; ".join(
                [f["reason"] for f in r.get("fired") or []]
                + [f"{f['why']}: {f.get('field', '')}" for f in r.get("flags") or []]
            )
            or r.get("error")
            or ""
        )
        conf = r.get("decision_confidence")
        lines.append(
            f"| {Path(r['path']).name} | {r.get('doc_type') or '-'} | {r.get('decision') or '-'} | "
            f"{r.get('status')} | {'-' if conf is None else f'{conf:.2f}'} | {reasons.replace('|', '/')} |"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def cmd_review(args: argparse.Namespace) -> int:
    from agents.feedback import flush
    from agents.store import Store

    args.db = review_store(args)
    if not Path(args.db).is_file():  # nothing was ever extracted with this store: do not create an empty one
        print(
            f"no review store at {args.db}: `tunebridge extract` (or the service's /v1/documents) creates it "
            "(or give --db, or the service's --data-dir)",
            file=sys.stderr,
        )
        return 2
    if args.action == "list":
        store = Store(args.db)
        pending = store.documents(status="pending_review")
        if not pending:
            print("nothing waiting for review")
        if args.by == "value":
            for d, value in by_value(args, pending):
                top = value["reasons"][0] if value["reasons"] else "-"
                print(f"{d['thread_id']}  {value['score']:.3f}  {d['doc_type'] or '-':14} {d['path']}  ({top})")
            return 0
        for d in pending:
            print(
                f"{d['thread_id']}  {d['doc_type'] or '-':14} {d['decision'] or '-':8} {d['path']}  "
                f"({d['summary'].get('flags', 0)} flags; rules: {', '.join(d['summary'].get('fired', [])) or '-'})"
            )
        return 0
    if args.action == "flush":
        _, store, deps = open_runtime(args, model=_NoModel())
        print(json.dumps(flush(store, deps.webhook)))
        return 0
    if not args.id:
        print(f"review {args.action}: give the document id (tunebridge review list)", file=sys.stderr)
        return 2
    graph, store, _ = open_runtime(args, model=_NoModel())  # resuming decides by the rules: no model needed
    config = {"configurable": {"thread_id": args.id}}
    state = graph.get_state(config)
    if not state.values:
        print(f"no document {args.id!r} in {args.db}", file=sys.stderr)
        return 2
    pending = [i.value for t in state.tasks for i in t.interrupts]
    if args.action == "show":
        print(json.dumps(pending[0] if pending else {"status": state.values.get("status")}, indent=2, default=str))
        return 0
    if not pending:
        print(f"document {args.id} is not waiting for review (status {state.values.get('status')})", file=sys.stderr)
        return 2
    answer = _read_corrections(args.corrections) if args.corrections else _prompt(pending[0])
    answer.setdefault("reviewer", args.reviewer)
    from langgraph.types import Command

    result = graph.invoke(Command(resume=answer), config)
    from agents.graph import output

    record = output(result)
    if result.get("__interrupt__"):
        record["status"] = "pending_review"
        print(
            f"document {args.id} still fails validation: give a decision, or corrections that pass "
            f"({'; '.join(f['field'] + ': ' + f['detail'] for f in result.get('flags') or [])})",
            file=sys.stderr,
        )
    print(json.dumps(record, indent=2, default=str))
    return 0


def by_value(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The store's `rows`, most informative first (backend/labels/suggest.py), each with its value. With
    --data-dir, novelty against the service's `<--dataset>-<type>` datasets; otherwise not measured."""
    from backend.labels import suggest
    from backend.services.documents import as_json, corrections_heads

    graph, _, _ = open_runtime(args, model=_NoModel())
    states = [graph.get_state({"configurable": {"thread_id": r["thread_id"]}}).values for r in rows]
    indexes = None
    if args.data_dir:
        from backend.settings import Settings
        from backend.storage.engine import make_engine

        engine = make_engine(Settings(data_dir=Path(args.data_dir)).db_url)
        indexes = {
            t: corrections_heads(engine=engine, data_dir=Path(args.data_dir), dataset=args.dataset, doc_type=t)
            for t in {r["doc_type"] for r in rows}
        }
    return [(rows[i], as_json(value)) for i, value in suggest.rank(states, index=indexes)]


def _read_corrections(path: str) -> dict[str, Any]:
    try:
        answer = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"--corrections {path}: {exc}") from exc
    if not isinstance(answer, dict):
        raise SystemExit(f"--corrections {path}: expected a JSON object with 'fields' and/or 'decision'")
    return answer


def _prompt(payload: dict[str, Any]) -> dict[str, Any]:
    print(
        json.dumps(
            {k: payload.get(k) for k in ("path", "doc_type", "fields", "flags", "fired", "decision")},
            indent=2,
            default=str,
        )
    )
    fields: dict[str, Any] = {}
    print(
        'Corrections: one per line as path=value (JSON values, e.g. total=12.5 or vendor.name="ACME"); '
        "empty line to finish."
    )
    for line in iter(lambda: input("> ").strip(), ""):
        path, _, value = line.partition("=")
        try:
            fields[path.strip()] = json.loads(value)
        except json.JSONDecodeError:
            fields[path.strip()] = value.strip()
    decision = input("decision [approve/review/reject, empty: re-apply the rules]: ").strip() or None
    return {"fields": fields, "decision": decision, "note": input("note: ").strip() or None}


class _NoModel:
    """For commands that never call the model (list, show, flush)."""

    name = "none"

    def extract(self, *a, **k):
        raise RuntimeError("no model configured for this command")

    def explain(self, *a, **k):
        raise RuntimeError("no model configured for this command")
