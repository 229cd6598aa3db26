"""A run is a file: training options as YAML or JSON (`tunebridge train --config run.yaml`), and the
resolved options written into every run folder as `config.yaml`, so that file reruns the run.

The keys are TrainConfig's fields (config.py documents each once). A key that is no option is refused
with the closest option named, a value of the wrong type with its key and what that key expects; both
errors name the file. Options given on the command line replace the file's. Paths in the file are read
from the folder the command runs in, as the same options on the command line are.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from backend.errors import InvalidRequest
from backend.training.config import TrainConfig, check_known

RUN_FILE = "config.yaml"  # beside config.json (which --resume reads) in every run folder

HEADER = """\
# A tunebridge training run: every option, resolved (defaults filled in, command-line options applied).
# Run it again: tunebridge train --config {name}  (with run_name set, add --run-name NEW: a folder holds one run)
# Paths are read from the folder the command runs in. Every option: docs/configuration.md.
"""


class _Loader(yaml.SafeLoader):
    """Safe YAML where `2e-4` is a number (as in JSON and YAML 1.2; YAML 1.1 reads it as text) and a
    key given twice is refused (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # merge keys (<<) first, as SafeLoader does
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"),
    list("-+0123456789."),
)


def read_options(path: str | Path) -> dict[str, Any]:
    """The options a run file sets, each key checked to be an option and each value of its type."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        except InvalidRequest as exc:  # a key given twice
            raise InvalidRequest(f"{path}: {exc}") from None
    else:
        try:
            values = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise InvalidRequest(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if values is None:  # an empty file: every option at its default
        return {}
    if not isinstance(values, dict):
        raise InvalidRequest(
            f"{path}: got {type(values).__name__}, expected a mapping of training options (key: value)"
        )
    odd = [k for k in values if not isinstance(k, str)]
    if odd:
        raise InvalidRequest(f"{path}: key {odd[0]!r} is no option name; expected the names of training options")
    try:
        check_known(TrainConfig, values, what="training")
    except InvalidRequest as exc:
        raise InvalidRequest(f"{path}: {exc}") from None
    return values


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The run a file describes, with `overrides` (options given on the command line) replacing its keys."""
    from_file = read_options(path)
    overrides = overrides or {}
    try:
        config = TrainConfig.from_dict({**from_file, **overrides})
    except InvalidRequest as exc:
        key = str(exc).split(":", 1)[0]  # validation errors start with their key
        if key in from_file and key not in overrides:
            raise InvalidRequest(f"{path}: {exc}") from None
        raise
    if not config.data:
        raise InvalidRequest(f"{path}: no training data: set data: [FILE, ...] in it, or give --data FILE")
    return config


def render(config: TrainConfig, *, name: str = RUN_FILE) -> str:
    """`config` as a run file: every option in TrainConfig's order, each under its help text."""
    out = [HEADER.format(name=name)]
    for f in dataclasses.fields(TrainConfig):
        out.append("\n".join("# " + line for line in textwrap.wrap(f.metadata["help"], 98)))
        value = {f.name: getattr(config, f.name)}
        out.append(yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=1_000_000).rstrip("\n"))
    return "\n".join(out) + "\n"


def write_run_file(config: TrainConfig, run_dir: Path) -> Path:
    """Write the resolved run file into `run_dir`; `tunebridge train --config` on it reruns the run."""
    path = run_dir / RUN_FILE
    path.write_text(render(config, name=str(path)), encoding="utf-8")
    return path


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise InvalidRequest(f"key {key!r} is given twice")
        seen[key] = value
    return seen
