"""The docs tell the truth about the code: the reference pages are what the generator writes today,
they name every CLI option and every `TUNEBRIDGE_*` variable, every `tunebridge ...` command shown in
README.md and docs/ parses with the real parser, and the README stays a guide (at most 250 lines)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from backend import docs_gen
from backend.cli import REVIEW_ACTIONS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console", "text"}
VARIABLE = re.compile(r"\bTUNEBRIDGE_[A-Z0-9_]*[A-Z0-9]\b")


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for name, sub in docs_gen._subparsers(parser).items():
        yield from _parsers(sub, (*path, name))


def _section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def test_the_readme_is_a_guide_of_at_most_250_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move reference material to docs/"
    assert lines[0] == "# tunebridge"
    setup = next(i for i, line in enumerate(lines) if line.startswith("## Set-up"))
    assert next(i for i, line in enumerate(lines) if line.startswith("## ")) == setup  # the first section
    assert "make demo" in "\n".join(lines[setup:setup + 8]) and "make test" in "\n".join(lines[setup:setup + 8])


def test_the_generated_reference_pages_are_what_the_code_gives_today():
    assert docs_gen.stale(ROOT / "docs") == [], "run: python -m backend.docs_gen"


def test_every_option_of_every_subcommand_is_in_the_cli_reference():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = []
    for path, parser in _parsers(build_parser()):
        section = _section(text, "## tunebridge " + " ".join(path)) if path else text[:text.index("\n## ")]
        for action in parser._actions:
            missing += [f"tunebridge {' '.join(path)} {o}" for o in action.option_strings
                        if o not in ("-h", "--help") and f"`{o}`" not in section]
    for action in REVIEW_ACTIONS:
        assert f"### tunebridge review {action}\n" in text
    assert not missing, f"not in docs/cli.md: {missing}"


def _variables_in_code() -> set[str]:
    files = [p for d in ("backend", "agents", "benchmarks", "scripts", "tests", "docker") for p in (ROOT / d).rglob("*")
             if p.is_file() and p.suffix in {".py", ".sh", ".yaml", ".yml", ""} | {".cuda", ".Dockerfile"}]
    files += [ROOT / "compose.yaml", ROOT / ".env.example", ROOT / "Makefile"]
    return {name for f in files if f.is_file() for name in VARIABLE.findall(f.read_text(encoding="utf-8",
                                                                                         errors="ignore"))}


def test_every_tunebridge_variable_is_in_the_configuration_reference():
    from backend.settings import Settings

    documented = set(VARIABLE.findall((ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")))
    settings = {e for name, info in Settings.model_fields.items() for e in docs_gen.settings_env_names(name, info)
                if e.startswith("TUNEBRIDGE_")}
    code = _variables_in_code()
    assert {"TUNEBRIDGE_DATA_DIR", "TUNEBRIDGE_CACHE_DIR", "TUNEBRIDGE_API_KEY"} <= code  # the scan finds them
    assert not settings - documented, f"settings missing from docs/configuration.md: {sorted(settings - documented)}"
    assert not code - documented, f"variables read by the code, missing from docs/configuration.md: " \
                                  f"{sorted(code - documented)}"


def _words(line: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in an example's "..."
        words = line.split("#")[0].split()
    return [w.strip("[]") for w in words]


def _argv(words: list[str]) -> list[str] | None:
    """The arguments after the `tunebridge` word of a shell command line (None: no such command)."""
    for i, word in enumerate(words):
        if (word == "tunebridge" or word.endswith("/tunebridge")) and words[i + 1:i + 2] != ["tunebridge"] and not (
                i and words[i - 1].startswith("-")):  # `docker run --name tunebridge ...`: a value, not the command
            argv = []
            for w in words[i + 1:]:
                if w in {"|", "||", "&&", ";", ">", ">>", "2>&1"}:
                    break
                argv.append(w.split("|")[0] if "|" in w and not w.startswith(("{", "'", '"')) else w)
            return argv or None
    return None


def shown_commands() -> list[tuple[str, list[str], bool]]:
    """(where, argv, whole): commands in shell code blocks are whole; a `tunebridge ...` inline in prose names
    a command and some of its options."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if block.group(1) not in SHELL_BLOCKS:
                continue
            for line in block.group(2).replace("\\\n", " ").splitlines():
                argv = _argv(_words(line))
                if argv:
                    found.append((f"{page.name}: {line.strip()}", argv, True))
        prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        for span in re.findall(r"`([^`\n]+)`", prose):
            argv = _argv(_words(span)) if "tunebridge" in span else None
            if argv:
                found.append((f"{page.name}: `{span}`", argv, False))
    return found


def test_the_docs_show_commands_to_check():
    shown = shown_commands()
    assert sum(whole for _, _, whole in shown) >= 20 and sum(not whole for _, _, whole in shown) >= 20
    assert {argv[0] for _, argv, _ in shown} >= {"train", "eval", "serve", "extract", "review", "keys", "vllm"}


@pytest.mark.parametrize("where, argv, whole", shown_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_shown_in_the_docs_parses(where, argv, whole):
    parser = build_parser()
    if not whole:  # a mention: the command exists and the options it names are its own
        p, words = parser, [w for w in argv if w != "--debug"]
        while words and words[0] in docs_gen._subparsers(p):
            p = docs_gen._subparsers(p)[words.pop(0)]
        assert p is not parser or argv[0].startswith("-"), f"{where}: no such command"
        unknown = [w for w in words if w.startswith("--") and w.split("=")[0] not in p._option_string_actions]
        assert not unknown, f"{where}: unknown option(s) {unknown}"
        return
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            parser.parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 0, f"{where}: {err.getvalue().strip().splitlines()[-1]}"


def test_version_prints_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"tunebridge {version('tunebridge')}"


def test_the_version_command_answers_without_loading_anything():
    done = subprocess.run([sys.executable, "-c", "import sys; from backend.cli import main; main(['--version'])"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("tunebridge ")
    assert "torch" not in done.stderr


@pytest.mark.parametrize("action", list(REVIEW_ACTIONS))
def test_review_help_per_action_shows_that_action_and_only_its_options(action, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["review", action, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith(f"usage: tunebridge review {action}")
    assert REVIEW_ACTIONS[action][0].split(" (")[0].split(":")[0][:40] in " ".join(out.split())
    assert "--device" not in out and "--rank" not in out  # the extraction model's flags are not review's
    shown = set(re.findall(r"--[a-z-]+", out)) - {"--help"}
    assert shown == {o for o in REVIEW_ACTIONS[action][1] if o.startswith("--")}


def test_review_help_without_an_action_lists_every_action(capsys):
    with pytest.raises(SystemExit):
        main(["review", "--help"])
    out = capsys.readouterr().out
    assert all(action in out for action in REVIEW_ACTIONS) and "--corrections" in out
