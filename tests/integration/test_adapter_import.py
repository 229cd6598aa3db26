"""A run trained with `tunebridge train` joins the service's registry — `tunebridge adapters import`, or an
archive of it sent to POST /v1/adapters — and the real server serves it by name; the CLI's list, show
and promote answer what the API answers; hostile or incomplete archives are refused and leave nothing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import httpx
import openai
import pytest

from conftest import SECRET_A, SECRET_Q
from servers import cli, running_service

INVOICE = "ACME Tools Ltd\nInvoice 2024-117\nDate: 03/05/2024\nTotal due: 1,250.00"
GOLD = {"company": "ACME Tools Ltd", "date": "03/05/2024", "total": "1,250.00"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model) -> dict:
    """A run folder the CLI's trainer wrote: it memorised one chat answer and one extraction."""
    from backend.labels.calibration import Platt
    from backend.labels.conventions import learn
    from backend.training.config import TrainConfig
    from backend.training.trainer import train

    folder = tmp_path_factory.mktemp("cli-run")
    data = folder / "memo.jsonl"
    chat = {"messages": [{"role": "user", "content": SECRET_Q}, {"role": "assistant", "content": SECRET_A}]}
    data.write_text(json.dumps(chat) + "\n" + json.dumps({"text": INVOICE, "fields": GOLD}) + "\n")
    config = TrainConfig(
        model=tiny_model,
        data=[str(data)],
        output_dir=str(folder / "runs"),
        run_name="memo",
        max_steps=80,
        batch_size=1,
        learning_rate=0.02,
        warmup_ratio=0.0,
        report_to="none",
        save_every=0,
        val_fraction=0.0,
        precision="fp32",
        threads=1,
    )
    result = train(config, progress_bar=False)
    assert result.status == "succeeded"
    Platt(a=1.5, b=-0.25).save(result.run_dir / "adapter")  # as `tunebridge eval --calibrate` leaves it
    invoices = [  # label rules need 5 labelled documents (a run on more of them learns these itself)
        (
            f"Vendor {n} Ltd\nInvoice 2024-{n}\nDate: 0{n}/05/2024\nTotal due: 1,{n}50.00",
            dict(company=f"Vendor {n} Ltd", date=f"0{n}/05/2024", total=f"1,{n}50.00"),
        )
        for n in range(1, 6)
    ]
    assert learn(invoices).save(result.run_dir / "adapter", memory_folder=result.run_dir)
    return {"dir": result.run_dir, "data": data}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    """The real service (no job workers: nothing trains here), adapter uploads capped at 1 MiB."""
    env = {"TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model, "TUNEBRIDGE_MAX_ADAPTER_MB": "1"}
    with running_service(tmp_path_factory.mktemp("import-data"), env=env, workers=0) as running:
        yield running


@pytest.fixture(scope="module")
def imported(server, run) -> dict:
    done = cli("adapters", "import", str(run["dir"]), "--name", "memo-cli", data_dir=server["data_dir"])
    assert done.returncode == 0, done.stderr
    assert "registered memo-cli@1" in done.stdout
    return server


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server['url']}/v1", api_key=server["key"], max_retries=0)


def _ask(server, model: str):
    return _client(server).chat.completions.create(
        model=model, messages=[{"role": "user", "content": SECRET_Q}], max_tokens=48
    )


def test_an_imported_cli_run_is_served_by_name(imported, run):
    answer = _ask(imported, "memo-cli")
    assert answer.choices[0].message.content == SECRET_A and answer.model == "memo-cli@1"
    record = httpx.get(f"{imported['url']}/v1/adapters/memo-cli", headers=imported["auth"]).json()
    assert record["dataset_hash"] == hashlib.sha256(run["data"].read_bytes()).hexdigest()
    assert record["metrics"]["steps"] == 80 and record["metrics"]["final_loss"] is not None
    assert record["schema"] == ["company", "date", "total"] and record["path"] == "adapters/memo-cli/v1"
    version = imported["data_dir"] / "adapters" / "memo-cli" / "v1"
    for kept in ("adapter/adapter_model.safetensors", "adapter/conventions.json", "adapter/calibration.json"):
        assert (version / kept).is_file(), kept
    assert (version / "label_memory.json").is_file() and (version / "tokenizer" / "tokenizer_config.json").is_file()
    extracted = httpx.post(
        f"{imported['url']}/v1/extract",
        json={"adapter": "memo-cli", "text": INVOICE},
        headers=imported["auth"],
    )
    assert extracted.status_code == 200, extracted.text
    assert extracted.json()["model"] == "memo-cli@1" and extracted.json()["fields"] == GOLD


def test_cli_list_show_and_promote_answer_as_the_api(imported):
    url, auth, data_dir = imported["url"], imported["auth"], imported["data_dir"]

    def cli_json(*args: str):
        done = cli("adapters", *args, "--json", data_dir=data_dir)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    promoted = cli_json("promote", "memo-cli@1", "--reason", "imported")
    assert promoted == httpx.get(f"{url}/v1/adapters/memo-cli/aliases/prod", headers=auth).json()
    assert promoted["version"] == 1 and promoted["history"][0]["reason"] == "imported"
    assert cli_json("list") == httpx.get(f"{url}/v1/adapters", headers=auth).json()
    assert cli_json("show", "memo-cli@prod") == httpx.get(f"{url}/v1/adapters/memo-cli@prod", headers=auth).json()
    table = cli("adapters", "list", data_dir=data_dir).stdout
    assert "memo-cli@1" in table and "prod" in table
    shown = cli("adapters", "show", "memo-cli", data_dir=data_dir).stdout
    assert "adapter" in shown and "memo-cli@1" in shown and "sha256" in shown


def _import(run_dir: Path, name: str, data_dir: Path, *extra: str):
    from backend.cli import main

    return main(["adapters", "import", str(run_dir), "--name", name, "--data-dir", str(data_dir), *extra])


def test_import_refuses_a_name_in_use_an_unfinished_run_and_a_missing_or_other_base(imported, run, tmp_path, capsys):
    data_dir = imported["data_dir"]
    assert _import(run["dir"], "memo-cli", data_dir) == 2
    assert "already exists" in capsys.readouterr().err
    assert _import(run["dir"], "memo-cli", data_dir, "--new-version") == 0
    assert "registered memo-cli@2" in capsys.readouterr().out

    cancelled = tmp_path / "cancelled"
    cancelled.mkdir()
    (cancelled / "config.json").write_text("{}")
    (cancelled / "summary.json").write_text(json.dumps({"status": "cancelled", "steps": 3, "total_steps": 10}))
    assert _import(cancelled, "cancelled", data_dir) == 2
    err = capsys.readouterr().err
    assert "no adapter weights" in err and f"tunebridge train --resume {cancelled}" in err

    moved = tmp_path / "moved"
    shutil.copytree(run["dir"], moved, ignore=shutil.ignore_patterns("checkpoints"))
    summary = json.loads((moved / "summary.json").read_text())
    summary.update(base_model=str(tmp_path / "gone"), base_model_path=str(tmp_path / "gone"))
    (moved / "summary.json").write_text(json.dumps(summary))
    assert _import(moved, "moved", data_dir) == 2
    assert "base model of this run not found" in capsys.readouterr().err

    other = tmp_path / "other"
    shutil.copytree(run["dir"], other, ignore=shutil.ignore_patterns("checkpoints"))
    meta = json.loads((other / "adapter" / "tunebridge.json").read_text())
    (other / "adapter" / "tunebridge.json").write_text(json.dumps({**meta, "base_model_sha256": "0" * 64}))
    assert _import(other, "other", data_dir) == 2
    assert "is not the one this adapter was trained on" in capsys.readouterr().err
    for refused in ("cancelled", "moved", "other"):
        assert not (data_dir / "adapters" / refused).exists()


def _tar(members: dict[str, bytes | None], *, link: str | None = None) -> bytes:
    """A tar.gz of {name: bytes (a file) or None (a folder)}, with a symlink named `link` if given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


def _run_files(run_dir: Path, top: str = "memo") -> dict[str, bytes | None]:
    return {
        f"{top}/{p.relative_to(run_dir).as_posix()}": p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.relative_to(run_dir).parts[0] != "checkpoints"
    }


def _upload(server, archive: bytes, name: str, filename: str = "memo.tar.gz", **form: str) -> httpx.Response:
    return httpx.post(
        f"{server['url']}/v1/adapters",
        files={"file": (filename, archive, "application/octet-stream")},
        data={"name": name, **form},
        headers=server["auth"],
        timeout=60,
    )


def _nothing_left(server, name: str) -> None:
    assert httpx.get(f"{server['url']}/v1/adapters/{name}", headers=server["auth"]).status_code == 404
    adapters = server["data_dir"] / "adapters"
    assert not (adapters / name).exists()
    assert not (adapters / ".uploads").is_dir() or not any((adapters / ".uploads").iterdir())


def test_an_uploaded_archive_is_registered_and_served(server, run):
    created = _upload(server, _tar(_run_files(run["dir"])), "memo-up")
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "memo-up@1" and created.json()["path"] == "adapters/memo-up/v1"
    assert created.json()["dataset"] == "run:memo" and created.json()["metrics"]["steps"] == 80
    assert created.json()["dataset_hash"] == hashlib.sha256(run["data"].read_bytes()).hexdigest()  # as trained
    assert _ask(server, "memo-up").choices[0].message.content == SECRET_A
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:  # the run's files at the archive's root
        for name, content in _run_files(run["dir"], top="").items():
            archive.writestr(name.lstrip("/"), content or b"")
    again = _upload(server, zipped.getvalue(), "memo-up", "memo.zip")
    assert again.status_code == 409 and "already exists" in again.json()["error"]
    second = _upload(server, zipped.getvalue(), "memo-up", "memo.zip", new_version="true")
    assert second.status_code == 201 and second.json()["id"] == "memo-up@2", second.text


@pytest.mark.parametrize(
    "change,code,message",
    [
        (lambda files: {**files, "../escaped.txt": b"x"}, 422, "points outside the run folder"),
        (lambda files: {**files, "/tmp/absolute.txt": b"x"}, 422, "points outside the run folder"),
        ("link", 422, "is a link"),
        (
            lambda files: {k: v for k, v in files.items() if not k.endswith("adapter_model.safetensors")},
            422,
            "no adapter weights",
        ),
        (lambda files: {"notes/readme.txt": b"hello"}, 422, "holds no run folder"),
        (lambda files: {**files, "memo/tokenizer/huge.bin": bytes(2 * 1024 * 1024)}, 413, "unpacks to more than"),
    ],
    ids=["traversal", "absolute", "symlink", "no-weights", "no-run", "unpacks-too-large"],
)
def test_hostile_or_incomplete_archives_are_refused_and_leave_nothing(server, run, change, code, message):
    files = _run_files(run["dir"])
    archive = _tar(files, link="memo/adapter/linked") if change == "link" else _tar(change(files))
    refused = _upload(server, archive, "refused")
    assert refused.status_code == code and message in refused.json()["error"], refused.text
    _nothing_left(server, "refused")


def test_a_zip_with_a_link_is_refused(server, run):
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for name, content in _run_files(run["dir"]).items():
            archive.writestr(name, content or b"")
        link = zipfile.ZipInfo("memo/adapter/linked")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    refused = _upload(server, zipped.getvalue(), "refused", "memo.zip")
    assert refused.status_code == 422 and "is a link" in refused.json()["error"]
    _nothing_left(server, "refused")


def test_an_oversized_upload_is_refused_before_it_is_read(server):
    refused = _upload(server, bytes(1024 * 1024 + 1), "refused")
    assert refused.status_code == 413 and "TUNEBRIDGE_MAX_ADAPTER_MB" in refused.json()["error"]
    _nothing_left(server, "refused")


def test_an_upload_without_its_file_or_name_says_which_is_missing(server):
    no_file = httpx.post(f"{server['url']}/v1/adapters", data={"name": "x"}, headers=server["auth"])
    assert no_file.status_code == 422 and "file" in no_file.text
    no_name = httpx.post(f"{server['url']}/v1/adapters", files={"file": ("a.zip", b"PK")}, headers=server["auth"])
    assert no_name.status_code == 422 and "name" in no_name.text


def test_an_upload_on_a_base_the_server_does_not_serve_is_refused(server, run):
    refused = _upload(server, _tar(_run_files(run["dir"])), "refused", base_model="/etc")
    assert refused.status_code == 422 and "base_model" in refused.json()["error"]
    _nothing_left(server, "refused")
