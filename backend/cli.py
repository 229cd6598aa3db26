"""`tunebridge` command line: thin wrappers over the training, merge and generation modules."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import traceback
import types
from typing import Any

from backend.errors import InvalidRequest, TunebridgeError

# Failures explained by their message: "error: ..." and the error's exit code (2 for a wrong input).
# Anything else is a bug: its traceback is shown (all of it with --debug).
EXPECTED_ERRORS = (
    TunebridgeError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; help texts come from the dataclass (documented once)."""
    from backend.training.config import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata["help"].replace("%", "%%") + (
            f" (default: {default})" if default not in (None, []) else ""
        )
        kind = str(f.type)  # annotations are strings here: "int", "float", "str | None", ...
        if f.name == "data":
            parser.add_argument(flag, nargs="+", default=None, metavar="FILE", help=help_text)
        elif kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            caster = {"int": int, "float": float}.get(kind, str)
            parser.add_argument(flag, type=caster, default=None, choices=f.metadata.get("choices"), help=help_text)


def _config_from_args(args: argparse.Namespace):
    from backend.training.config import TrainConfig

    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:  # given on the command line (every flag defaults to None)
            values[f.name] = value
    if getattr(args, "config", None) is not None:
        from backend.training.runfile import load_config

        return load_config(args.config, overrides=values)  # the flags given replace the file's keys
    return TrainConfig(**values)


def cmd_train(args: argparse.Namespace) -> int:
    from backend.training.trainer import train

    if args.resume is not None and args.config is not None:
        raise InvalidRequest(
            "train: give --config FILE or --resume RUN_DIR, not both (a run resumes with its own options)"
        )
    if args.resume is None and not args.data and args.config is None:
        raise InvalidRequest("train: give --data FILE [FILE ...], --config FILE, or --resume RUN_DIR")
    config = _config_from_args(args) if args.resume is None else None
    stop = {"requested": False}

    def request_stop(signum: int, _frame: types.FrameType | None) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
            "(press again to abort at once)",
            file=sys.stderr,
        )

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    result = train(config, resume_dir=args.resume, should_stop=lambda: stop["requested"], progress_bar=not args.quiet)
    s = result.summary
    if s.get("remote"):  # multi-node, a node other than rank 0's: the outputs are written on that one
        print(f"{s['status']}: this node's ranks are done; rank 0's node holds the run folder {result.run_dir}")
        return 0
    print(
        f"{s['status']}: {s['steps']}/{s['total_steps']} steps, {s['tokens_per_s']:.0f} tokens/s, "
        f"{s['train_time_s']:.0f} s; {s['runtime']}"
    )
    if s["data"].get("augmented"):
        print(f"trained on {s['data']['train_examples']} examples, {s['data']['augmented']} of them augmented")
    if s["data"]["too_long"]:
        print(
            f"skipped {len(s['data']['too_long'])} example(s) longer than max_length, e.g. {s['data']['too_long'][0]}"
        )
    if result.status == "cancelled":
        print(f"resume with: tunebridge train --resume {result.run_dir}")
        return 130
    print(f"run folder: {result.run_dir}  (adapter/, metrics.jsonl, loss.png, summary.json)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from backend.training.merge import merge_adapter

    out = merge_adapter(args.adapter, args.out)
    print(f"merged model written to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.include_label_memory and args.format != "adapter":
        raise InvalidRequest(f"--include-label-memory goes with --format adapter, not {args.format}")
    if args.type and not args.format.startswith("gguf"):
        raise InvalidRequest(f"--type goes with --format gguf or gguf-lora, not {args.format}")
    if args.format in ("gguf", "gguf-lora"):
        from backend.models.export import export_gguf

        out_type = args.type or "f16"
        out = export_gguf(args.adapter, args.out, out_type=out_type, lora=args.format == "gguf-lora")
        files = ", ".join(sorted(p.name for p in out.glob("*.gguf")))
        print(f"{out}: {files} ({out_type}) and Modelfile written: ollama create NAME -f Modelfile")
        return 0
    if args.format == "safetensors":
        from backend.training.merge import merge_adapter

        out = merge_adapter(args.adapter, args.out)
        print(f"merged model written to {out}")
        return 0
    from backend.models.export import export_adapter

    out = export_adapter(args.adapter, args.out, include_label_memory=args.include_label_memory)
    print(
        f"adapter written to {out / 'adapter'}"
        + (
            " with its label memory (it quotes training documents)"
            if args.include_label_memory
            else " (no label memory)"
        )
    )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from backend.inference.bundle import AdapterBundle
    from backend.inference.pool import GenRequest, ModelPool

    if args.messages:
        with open(args.messages) as handle:
            messages = json.load(handle)
    elif args.prompt:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
    else:
        raise InvalidRequest("generate: give --prompt TEXT or --messages FILE.json")
    bundle = (
        AdapterBundle.of_folder(args.adapter, base=args.model)
        if args.adapter
        else AdapterBundle(args.model or "smollm2-135m")
    )
    request = GenRequest(
        tuple((m["role"], m["content"]) for m in messages),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
    )
    print(ModelPool(device=args.device).generate(bundle, [request])[0].text.strip())
    return 0


def cmd_models(_args: argparse.Namespace) -> int:
    import importlib.util

    from backend.models.bundled import BUNDLED, DEFAULT_MODEL

    for name, m in BUNDLED.items():
        installed = importlib.util.find_spec(m.package) is not None
        print(
            f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: "
            f"{'installed' if installed else 'not installed: ' + m.install_hint}; licence: {m.licence}"
        )
    return 0


def _settings(args: argparse.Namespace):
    from backend.settings import from_options

    return from_options(
        data_dir=args.data_dir,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        workers=getattr(args, "workers", None),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from backend.api.main import create_app
    from backend.cores import machine_cores
    from backend.supervisor import Supervisor

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    inference_threads, worker_threads = settings.thread_split(cores=machine_cores(), workers=settings.workers)
    settings = settings.model_copy(update={"inference_threads": inference_threads, "worker_threads": worker_threads})
    workers = Supervisor(settings, settings.workers).start()  # restarts a worker that dies
    # uvicorn handles SIGTERM itself, then re-raises it with the handler that was set before it started:
    # make that one unwind this function, so the workers below are always stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    finally:
        workers.stop()  # a worker checkpoints and re-queues its job on SIGTERM
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from backend.worker import worker_main

    worker_main(_settings(args))
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from backend.storage.engine import make_engine
    from backend.storage.keys import create_key
    from backend.storage.migrations import migrate

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    migrate(engine)
    print(f"new API key for {settings.db_url} (shown once; send it as 'Authorization: Bearer <key>'):")
    print(create_key(engine=engine))
    return 0


def cmd_vllm(args: argparse.Namespace) -> int:
    from backend.services.vllm import vllm_commands
    from backend.storage.engine import make_engine

    settings = _settings(args)
    if not (settings.data_dir / "tunebridge.db").exists() and settings.db_url.startswith("sqlite"):
        print(f"no registry at {settings.data_dir} (give --data-dir, or TUNEBRIDGE_DATA_DIR)", file=sys.stderr)
        return 2
    commands = vllm_commands(engine=make_engine(settings.db_url), port=args.port)
    if not commands:
        print("the registry has no adapters yet: train one first", file=sys.stderr)
        return 2
    for c in commands:
        print(f"# {c['base_model']}: serves {', '.join(c['adapters'])}\n{c['command']}")
    print(
        "# to load promoted versions later (tunebridge vllm push), start it with "
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its environment"
    )
    return 0


def cmd_vllm_push(args: argparse.Namespace) -> int:
    from backend.services.vllm_push import push_adapter
    from backend.storage.engine import make_engine

    settings = _settings(argparse.Namespace(data_dir=args.data_dir))
    url = args.url or settings.vllm_url
    if not url:
        raise InvalidRequest("vllm push: give --url http://host:8000 (or set TUNEBRIDGE_VLLM_URL)")
    if not (settings.data_dir / "tunebridge.db").exists() and settings.db_url.startswith("sqlite"):
        print(f"no registry at {settings.data_dir} (give --data-dir, or TUNEBRIDGE_DATA_DIR)", file=sys.stderr)
        return 2
    done = push_adapter(
        url,
        args.ref,
        engine=make_engine(settings.db_url),
        api_key=args.api_key or settings.vllm_api_key,
        name=args.name,
        path_map=args.path_map if args.path_map is not None else settings.vllm_path_map,
        unload_previous=args.unload_previous,
        move_alias=args.alias,
        check_base=args.base_check,
    )
    state = "already loaded" if done["already_loaded"] else "loaded"
    print(
        f"{state}: {done['served_name']} ({done['adapter']}, base {done['base_model']}) from {done['lora_path']} "
        f"at {done['url']}"
    )
    if done["alias"]:
        print(f"alias {done['alias']['name']}: {done['alias']['action']}")
    for name in done["unloaded"]:
        print(f"unloaded: {name}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from backend.demo import run_demo

    return run_demo(minutes=args.minutes, output_dir=args.output_dir)


def version() -> str:
    """The installed package's version (pyproject.toml's, once `pip install -e .` has run)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tunebridge")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


# `tunebridge review ACTION --help`: what that action does and the options it reads (the parser is shared).
REVIEW_ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "list": (
        "List the documents held for a person: id, type, decision, path, flags and rules fired.",
        ("--db", "--data-dir"),
    ),
    "show": (
        "Show what the graph found for one held document and why it stopped (JSON).",
        ("id", "--db", "--data-dir"),
    ),
    "resume": (
        "Continue a held document with corrections and/or a decision (from --corrections FILE, else asked "
        "at the prompt); the rules decide again and the corrections go to the labelled-data webhook.",
        (
            "id",
            "--corrections",
            "--reviewer",
            "--policy",
            "--db",
            "--data-dir",
            "--webhook-url",
            "--webhook-secret",
            "--dataset",
        ),
    ),
    "flush": (
        "Send the corrections that could not be delivered (the outbox in --db) to the labelled-data webhook.",
        ("--db", "--data-dir", "--webhook-url", "--webhook-secret"),
    ),
}


def review_action_parser(review: argparse.ArgumentParser, action: str) -> argparse.ArgumentParser:
    """A parser for the help of one review action: its description and only the options it reads."""
    text, reads = REVIEW_ACTIONS[action]
    one = argparse.ArgumentParser(prog=f"tunebridge review {action}", description=text)
    for a in review._actions:
        if a.dest in reads or any(o in reads for o in a.option_strings):
            one._add_action(a)
    return one


def _per_action_help(review: argparse.ArgumentParser) -> None:
    """`review show --help` prints the help of `show`; `review --help` the whole command's."""

    class ActionHelp(argparse._HelpAction):
        def __call__(self, parser, namespace, values, option_string=None):
            if getattr(namespace, "action", None) in REVIEW_ACTIONS:
                review_action_parser(parser, namespace.action).print_help()
                parser.exit()
            super().__call__(parser, namespace, values, option_string)

    review.epilog = (
        "actions: list, show ID, resume ID, flush; `tunebridge review ACTION --help` says what one "
        "does and which options it reads"
    )
    for a in review._actions:
        if isinstance(a, argparse._HelpAction):
            a.__class__ = ActionHelp


def build_parser() -> argparse.ArgumentParser:
    from backend.models.gguf_export import OUT_TYPES

    parser = argparse.ArgumentParser(
        prog="tunebridge",
        description=__doc__.split(":")[0] + ": fine-tune small LLMs on your labelled documents, offline, CPU-first.",
    )
    parser.add_argument("--debug", action="store_true", help="on an error, show its whole traceback")
    parser.add_argument(
        "--version",
        action="version",
        version=f"tunebridge {version()}",
        help="print the installed tunebridge version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune a LoRA/QLoRA adapter on JSONL data")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a run file (YAML or JSON) of the options below by their key (examples/configs/; every run "
        "folder's config.yaml reruns its run); options given here replace the file's",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("merge", help="fold an adapter into its base model (standalone model folder)")
    p.add_argument("--adapter", required=True, help="run folder or adapter folder")
    p.add_argument("--out", required=True, help="empty or new output folder")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "export",
        help="an adapter to share: the LoRA folder, or merged into its base",
        description="Write an adapter where another machine or runtime can load it. "
        "--format adapter (default) copies the LoRA folder and its tokenizer; the label memory "
        "(recurring senders' labels and the first lines of training documents) stays behind "
        "unless --include-label-memory. --format safetensors merges it into its base (as merge). "
        "--format gguf merges it and writes model.gguf (llama.cpp, Ollama; Llama-architecture models) "
        "and an Ollama Modelfile with the chat template and stop tokens; --format gguf-lora writes the base "
        "as base.gguf and the adapter apart as adapter.gguf (llama.cpp --lora, Ollama ADAPTER).",
    )
    p.add_argument("--adapter", required=True, help="run folder, registered version folder or adapter folder")
    p.add_argument("--out", required=True, help="empty or new output folder")
    p.add_argument("--format", choices=("adapter", "safetensors", "gguf", "gguf-lora"), default="adapter")
    p.add_argument(
        "--type",
        choices=OUT_TYPES,
        help="--format gguf/gguf-lora: weight type, f16 unless given (1-D tensors stay f32; q8_0 is 8-bit, about half of f16's size)",
    )
    p.add_argument(
        "--include-label-memory",
        action="store_true",
        help="also copy label_memory.json (it quotes training documents: share it knowingly)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("generate", help="chat with the base model or base + adapter")
    p.add_argument("--model", help="base model (default: the adapter's base, else smollm2-135m)")
    p.add_argument("--adapter", help="run folder or adapter folder")
    p.add_argument("--prompt", help="user message")
    p.add_argument("--system", help="system message")
    p.add_argument("--messages", help="JSON file with a list of chat messages instead of --prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_generate)

    from backend.cli_eval import add_command as add_eval_command

    add_eval_command(sub)  # eval: its options and handler in backend/cli_eval.py

    from backend.cli_thresholds import add_command as add_thresholds_command

    add_thresholds_command(sub)  # thresholds: fitted on several evaluations (backend/cli_thresholds.py)

    p = sub.add_parser("models", help="list bundled base models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("serve", help="start the HTTP API (default 127.0.0.1:8000)")
    p.add_argument("--host", help="bind address (env TUNEBRIDGE_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env TUNEBRIDGE_PORT; default 8000)")
    p.add_argument("--data-dir", help="database, datasets, jobs, adapters (env TUNEBRIDGE_DATA_DIR)")
    p.set_defaults(func=cmd_serve)

    p.add_argument("--workers", type=int, help="worker processes for jobs (env TUNEBRIDGE_WORKERS; default 1)")

    p = sub.add_parser("worker", help="run a job worker alone (more workers, or on another machine)")
    p.add_argument("--data-dir", help="the service's data folder (env TUNEBRIDGE_DATA_DIR)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("keys", help="manage API keys")
    keys = p.add_subparsers(dest="keys_command", required=True)
    k = keys.add_parser("create", help="create an API key; prints it alone on the last line")
    k.add_argument("--data-dir", help="the service's data folder (env TUNEBRIDGE_DATA_DIR)")
    k.set_defaults(func=cmd_keys_create)

    p = sub.add_parser(
        "vllm",
        help="print `vllm serve` commands that serve the registry's adapters under the "
        "same names (on machines with vLLM); `vllm push REF` loads a version into a running one",
    )
    p.add_argument("--data-dir", help="the service's data folder (env TUNEBRIDGE_DATA_DIR)")
    p.add_argument("--port", type=int, default=8001, help="first port (one vLLM server per base model)")
    p.set_defaults(func=cmd_vllm)
    vllm = p.add_subparsers(dest="vllm_command", metavar="{push}")
    v = vllm.add_parser(
        "push",
        help="load a registry version into a running vLLM server as name@version "
        "(its runtime LoRA API: VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)",
    )
    v.add_argument("ref", help="name, name@3 or name@prod (an alias is resolved to its version)")
    v.add_argument("--url", help="the vLLM server, e.g. http://gpu-host:8000 (env TUNEBRIDGE_VLLM_URL)")
    v.add_argument("--api-key", help="the --api-key vLLM was started with (env TUNEBRIDGE_VLLM_API_KEY)")
    v.add_argument(
        "--path-map",
        action="append",
        metavar="LOCAL=REMOTE",
        help="a folder here and the same folder "
        "as vLLM sees it (another host, a container mount); repeatable (env TUNEBRIDGE_VLLM_PATH_MAP)",
    )
    v.add_argument("--name", help="serve it under this name instead of name@version")
    v.add_argument(
        "--unload-previous",
        action="store_true",
        help="unload the name's other versions from vLLM, except those an alias points at",
    )
    v.add_argument(
        "--alias",
        metavar="ALIAS",
        help="also serve it as name@ALIAS in vLLM, replacing what that name served (e.g. prod after a promotion)",
    )
    v.add_argument(
        "--no-base-check",
        dest="base_check",
        action="store_false",
        help="load it even when vLLM's base model does not look like the adapter's",
    )
    v.add_argument("--data-dir", default=argparse.SUPPRESS, help="the service's data folder (env TUNEBRIDGE_DATA_DIR)")
    v.set_defaults(func=cmd_vllm_push)

    from agents.cli import add_commands
    from backend.cli_adapters import add_commands as add_adapter_commands

    add_adapter_commands(sub)  # adapters: import, list, show, promote, rollback (the service's registry)
    add_commands(sub)  # extract, review: the agents' document graph
    _per_action_help(sub.choices["review"])

    p = sub.add_parser(
        "demo", help="the main job: fine-tune the bundled model on bundled receipts, show answers before and after"
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="the demo's time budget, about: training is sized to its share after measuring this machine's speed",
    )
    p.add_argument("--output-dir", default="runs", help="where the demo run folder goes")
    p.set_defaults(func=cmd_demo)
    return parser


# Libraries whose log records are notes about the input (pypdf: "incorrect startxref pointer", ...),
# not about the outcome: the CLI writes them to its log file instead of the terminal.
LOGGED_LIBRARIES = ("pypdf",)


def _quiet_libraries(command: str | None = None) -> None:
    """Keep the terminal for our own progress: no per-load bars or known-harmless notes."""
    import logging
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # "Loading weights" bars on every load
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # optional `kernels` download it can't do
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    if command not in ("serve", "worker"):  # a service's log is its output: there they stay
        route_library_logs()


def route_library_logs() -> None:
    """Send LOGGED_LIBRARIES' records to the log file (backend/paths.py log_file), not to stderr."""
    import logging

    from backend.paths import log_file

    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no writable cache folder: the notes stay on the terminal rather than being lost
    for name in LOGGED_LIBRARIES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "tunebridge_log", False)]:  # an earlier main() here
            logger.removeHandler(old)
            old.close()
        handler = logging.FileHandler(path, delay=True, encoding="utf-8")  # the file appears with the first note
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.tunebridge_log = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


# Commands that run torch in this process: each takes its share of the cores (`backend/cores.py`).
TORCH_COMMANDS = {"train", "eval", "generate", "demo", "merge", "export", "extract"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.command)
    if args.command in TORCH_COMMANDS:
        from backend import cores

        note = cores.crowded(cores.claim(args.command, fixed=getattr(args, "threads", 0) or 0))
        if note:
            print(note, file=sys.stderr)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except Exception:  # a bug: where it happened matters
        traceback.print_exc(limit=None if args.debug else -4)
        print(
            "error: unexpected failure (the traceback above"
            + ("" if args.debug else ", its last frames; `tunebridge --debug ...` shows all of it")
            + ")",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
