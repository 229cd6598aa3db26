"""Evaluations with the service's registry: which models compete (`build_candidates`), and an eval
job as a worker runs it — evaluate on the job's dataset snapshot, write the report into the job
folder and, with a promotion policy, decide whether the candidate takes the alias."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from backend import cores
from backend.errors import InvalidRequest
from backend.evaluation.config import EvalConfig
from backend.evaluation.policy import decide
from backend.evaluation.runner import Candidate, evaluate, load_eval_set, write_eval
from backend.inference.bundle import AdapterBundle, resolve
from backend.inference.pool import ModelPool
from backend.services import adapters
from backend.services.adapters import registry


def run_eval_job(job: dict[str, Any], *, engine: Engine, run_dir: Path, data: Path, default_base: str,
                 threads: int = 0, on_progress: Callable[[dict[str, Any]], None] | None = None,
                 pool: ModelPool | None = None) -> dict[str, Any]:
    config = EvalConfig.from_dict(job["params"])
    policy = config.policy
    refs = list(config.adapters)
    candidate_id = incumbent_id = None
    if policy is not None:  # the version the alias points at now competes on the same data
        candidate = adapters.resolve(engine=engine, ref=refs[0])
        candidate_id, refs[0] = candidate["id"], candidate["id"]
        try:
            incumbent_id = adapters.resolve(engine=engine, ref=f"{candidate['name']}@{policy.alias}")["id"]
        except adapters.AdapterNotFoundError:
            incumbent_id = None
        if incumbent_id and incumbent_id != candidate_id:
            refs.append(incumbent_id)
    candidates = build_candidates(adapters=refs, include_base=config.include_base, model=config.model,
                                  default_base=default_base, engine=engine)
    cores.claim("eval", fixed=threads).apply()
    examples, schema = load_eval_set(data, limit=config.limit or None)
    result = evaluate(examples=examples, schema=schema, candidates=candidates, pool=pool or ModelPool(),
                      batch_size=config.batch_size, max_new_tokens=config.max_new_tokens or None,
                      on_progress=on_progress)
    paths = write_eval({"dataset": job["dataset"], **result}, run_dir, title=f"Evaluation on dataset {job['dataset']}")
    summary = {label: _headline(entry) for label, entry in result["candidates"].items()}
    out: dict[str, Any] = {"status": "succeeded", "candidates": summary,
                           "artifacts": sorted(p.name for p in paths.values())}
    if policy is not None:
        assert candidate_id is not None  # set above whenever there is a policy
        out["promotion"] = _promote(engine, candidate_id, incumbent_id, result, policy)
    return out


def _headline(entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds": entry["seconds"]}
    if "extraction" in entry:
        s = entry["extraction"]
        out.update(micro_f1=s["micro"]["f1"], exact_match=s["exact_match"], json_valid=s["json_valid"],
                   schema_valid=s["schema_valid"], fields={f: v["f1"] for f, v in s["fields"].items()})
    if "answers" in entry:
        out.update({f"answer_{k}": v for k, v in entry["answers"].items()})
    return out


def _promote(engine: Engine, candidate_id: str, incumbent_id: str | None, result: dict[str, Any], policy) -> dict:
    entries = result["candidates"]
    if "extraction" not in entries[candidate_id]:
        raise InvalidRequest("promotion needs an extraction dataset (field-level F1 decides it)")
    decision = decide(entries[candidate_id]["extraction"],
                      entries[incumbent_id]["extraction"] if incumbent_id and incumbent_id != candidate_id else None,
                      policy)
    decision.update(candidate=candidate_id, incumbent=incumbent_id)
    name, version = candidate_id.split("@")
    adapters.record_decision(engine=engine, name=name, version=int(version), decision=decision)
    if decision["promote"] and incumbent_id != candidate_id:
        adapters.set_alias(engine=engine, name=name, alias=policy.alias, version=int(version),
                           reason="eval-gated: " + "; ".join(decision["reasons"]))
    return decision


def build_candidates(*, adapters: list[str], include_base: bool, model: str | None, default_base: str,
                     engine=None) -> list[Candidate]:
    """The base model (unless excluded) and each adapter: a run/adapter folder, or a registry reference
    (`name`, `name@3`, `name@prod`) when an engine is given."""
    found: list[Candidate] = []
    lookup = registry(engine) if engine is not None else None
    for ref in adapters:
        if lookup is None and not Path(ref).expanduser().exists():
            raise InvalidRequest(f"adapter {ref!r}: no such folder (registry references need the service's --data-dir)")
        bundle, record = resolve(ref, registry=lookup, folders=True)
        found.append(Candidate(record["id"] if record else bundle.label, bundle))
    if include_base:
        base = model or (found[0].target.base if found else default_base)
        found.insert(0, Candidate("base", AdapterBundle(base)))
    if not found:
        raise InvalidRequest("nothing to evaluate: give --adapter, or keep the base model in")
    return found
