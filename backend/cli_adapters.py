"""`tunebridge adapters`: the service's adapter registry from the command line.

    tunebridge adapters import runs/<run> --name receipts      # a CLI-trained run, served as `receipts`
    tunebridge adapters list
    tunebridge adapters show receipts@prod --json
    tunebridge adapters promote receipts@2                     # receipts@prod → version 2

The registry is the one `tunebridge serve` uses: the same data folder (--data-dir, else
TUNEBRIDGE_DATA_DIR, else ./tunebridge-data) and database (TUNEBRIDGE_DATABASE_URL, else SQLite in the
data folder). --json prints what the HTTP API answers for the same request.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from backend.errors import InvalidRequest, NotFound

DATA_DIR_HELP = "the service's data folder (env TUNEBRIDGE_DATA_DIR; default ./tunebridge-data)"


def add_commands(sub) -> None:
    p = sub.add_parser(
        "adapters",
        help="the service's adapter registry: import a trained run, list, show, promote, roll back",
        description="Import runs trained with `tunebridge train` into the registry `tunebridge serve` serves "
        "from, and list, show, promote or roll back its versions (as the /v1/adapters API does).",
    )
    actions = p.add_subparsers(dest="adapters_command", required=True)

    a = actions.add_parser(
        "import",
        help="register a finished run folder (or a .tar.gz/.zip of one) under a name",
        description="Copy a finished run's adapter, tokenizer, label rules, label memory and calibration into "
        "the registry, with its metrics and data hash, as NAME@1 (or the next version with --new-version). "
        "The run's base model must be found on this machine.",
    )
    a.add_argument("run", metavar="RUN_FOLDER", help="the run folder `tunebridge train` wrote, or an archive of it")
    a.add_argument("--name", required=True, help="the adapter's name (lower-case letters, digits, '-', '_')")
    a.add_argument("--new-version", action="store_true", help="add a version to an existing name")
    _common(a)
    a.set_defaults(func=cmd_import)

    a = actions.add_parser("list", help="every adapter with its versions (newest first) and aliases")
    _common(a)
    a.set_defaults(func=cmd_list)

    a = actions.add_parser("show", help="one version: NAME, NAME@VERSION or NAME@ALIAS")
    a.add_argument("ref", metavar="REF", help="name (the newest version), name@3 or name@prod")
    _common(a)
    a.set_defaults(func=cmd_show)

    a = actions.add_parser("promote", help="point an alias (default prod) at a version")
    a.add_argument("ref", metavar="NAME[@VERSION]", help="the version to promote (default: the newest)")
    a.add_argument("--alias", default="prod", help="the alias to move (default: prod)")
    a.add_argument("--reason", help="why (kept in the alias history)")
    _common(a)
    a.set_defaults(func=cmd_promote)

    a = actions.add_parser("rollback", help="move an alias back to the version it pointed at before")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--alias", default="prod", help="the alias to move back (default: prod)")
    _common(a)
    a.set_defaults(func=cmd_rollback)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--json", action="store_true", help="print JSON, as the HTTP API answers")


def _registry(args: argparse.Namespace, *, create: bool = False):
    """The service's settings and its migrated database engine; without `create`, a missing registry is an error."""
    from backend.settings import from_options
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate

    settings = from_options(data_dir=Path(args.data_dir) if args.data_dir else None)
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    if not create and settings.db_url.startswith("sqlite") and not (settings.data_dir / "tunebridge.db").is_file():
        raise NotFound(f"no registry at {settings.data_dir} (give --data-dir, or set TUNEBRIDGE_DATA_DIR)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    migrate(engine)
    return settings, engine


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_import(args: argparse.Namespace) -> int:
    from backend.services import adapter_import
    from backend.services.adapters import public

    settings, engine = _registry(args, create=True)
    run = Path(args.run).expanduser()
    if run.is_file():
        size = run.stat().st_size
        limit = int(settings.max_adapter_mb * 1024 * 1024)
        with open(run, "rb") as archive:
            record = adapter_import.import_archive(
                engine=engine,
                data_dir=settings.data_dir,
                archive=archive,
                filename=run.name,
                name=args.name,
                base_check=adapter_import.local_base,
                limit_bytes=max(limit, size),
                new_version=args.new_version,
            )
    elif run.is_dir():
        record = adapter_import.import_run(
            engine=engine,
            data_dir=settings.data_dir,
            run_dir=run,
            name=args.name,
            base_check=adapter_import.local_base,
            new_version=args.new_version,
            local_data=True,
        )
    else:
        raise InvalidRequest(f"{run}: no such run folder or archive")
    if args.json:
        _print(public(record, settings.data_dir))
        return 0
    print(f"registered {record['id']} (base {record['base_model']}) in {settings.data_dir}")
    print(f"serve it by name: model={record['name']!r} (or {record['id']!r}) with `tunebridge serve`")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from backend.services.adapters import list_adapters, public

    settings, engine = _registry(args)
    entries = [
        {**e, "versions": [public(v, settings.data_dir) for v in e["versions"]]} for e in list_adapters(engine=engine)
    ]
    if args.json:
        _print(entries)
        return 0
    if not entries:
        print(f"no adapters in {settings.data_dir} yet: train one, or `tunebridge adapters import RUN --name NAME`")
        return 0
    rows: list[tuple[str, ...]] = [("VERSION", "ALIASES", "BASE", "STEPS", "LOSS", "DATASET", "CREATED")]
    for entry in entries:
        by_version: dict[int, list[str]] = {}
        for alias, version in entry["aliases"].items():
            by_version.setdefault(version, []).append(alias)
        for v in entry["versions"]:
            loss = v["metrics"].get("final_loss")
            rows.append(
                (
                    v["id"],
                    ",".join(by_version.get(v["version"], [])) or "-",
                    v["base_model"],
                    str(v["metrics"].get("steps") or "-"),
                    f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
                    v["dataset"] or "-",
                    v["created_at"],
                )
            )
    _table(rows)
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def cmd_show(args: argparse.Namespace) -> int:
    from backend.services.adapters import public, resolve

    settings, engine = _registry(args)
    record = public(resolve(engine=engine, ref=args.ref), settings.data_dir)
    if args.json:
        _print(record)
        return 0
    metrics = record["metrics"]
    lines = {
        "adapter": record["id"],
        "aliases": ", ".join(record["aliases"]) or "-",
        "base model": record["base_model"],
        "dataset": f"{record['dataset'] or '-'} (sha256 {record['dataset_hash'] or 'unknown'})",
        "schema": ", ".join(record["schema"]) if isinstance(record["schema"], list) else "-",
        "metrics": ", ".join(f"{k} {v}" for k, v in metrics.items() if v is not None and not isinstance(v, dict)),
        "folder": f"{record['path']} (in {settings.data_dir})",
        "registered": f"{record['created_at']} ({record['job_id']})",
    }
    if record["promotion"]:
        lines["promotion"] = json.dumps(record["promotion"])
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from backend.services.adapters import resolve, set_alias

    _, engine = _registry(args)
    record = resolve(engine=engine, ref=args.ref)
    state = set_alias(
        engine=engine, name=record["name"], alias=args.alias, version=record["version"], reason=args.reason
    )
    return _alias(state, args)


def cmd_rollback(args: argparse.Namespace) -> int:
    from backend.services.adapters import rollback_alias

    _, engine = _registry(args)
    return _alias(rollback_alias(engine=engine, name=args.name, alias=args.alias), args)


def _alias(state: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        _print(state)
        return 0
    print(f"{state['name']}@{state['alias']} → version {state['version']}")
    for h in state["history"]:
        print(f"  {h['set_at']}  version {h['version']}  {h['reason'] or ''}".rstrip())
    return 0
