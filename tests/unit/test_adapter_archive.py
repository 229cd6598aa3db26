"""Unpacking an uploaded run folder (`backend/services/adapter_import.py`): the common ways to archive a
folder unpack to the run's files; damaged, oversized or clashing archives are refused with what was wrong,
and a run folder that is not finished is refused before anything is registered."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from backend.errors import InvalidRequest, TooLarge
from backend.services.adapter_import import check_run, unpack

RUN = {
    "adapter/adapter_config.json": b"{}",
    "adapter/adapter_model.safetensors": b"weights",
    "tokenizer/tokenizer_config.json": b"{}",
    "summary.json": json.dumps({"status": "succeeded", "base_model": "smollm2-135m"}).encode(),
    "checkpoints/step-2/optimizer.pt": b"left behind",
    "loss.png": b"left behind",
}


def _tar(members: dict[str, bytes], *, mode: str = "w:gz", root: str | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        if root is not None:
            info = tarfile.TarInfo(root)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


KEPT = {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "tokenizer/tokenizer_config.json"}


@pytest.mark.parametrize(
    "archive",
    [
        lambda: _tar({f"./{k}": v for k, v in RUN.items()}, root="./"),  # tar -C run -czf run.tgz .
        lambda: _tar({f"memo/{k}": v for k, v in RUN.items()}, root="memo/"),  # tar -czf run.tgz memo
        lambda: _tar(RUN, mode="w"),  # an uncompressed tar
    ],
    ids=["dot-root", "one-folder", "plain-tar"],
)
def test_a_run_folder_unpacks_to_its_own_files(archive, tmp_path):
    run = unpack(archive(), tmp_path, limit_bytes=1 << 20)
    assert _files(run) == KEPT | {"summary.json"}  # checkpoints and plots stay out
    assert check_run(run, where="archive")["base_model"] == "smollm2-135m"


def test_a_zip_with_the_run_in_one_folder_unpacks(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("memo/", b"")
        for name, content in RUN.items():
            archive.writestr(f"memo/{name}", content)
    buffer.seek(0)
    assert _files(unpack(buffer, tmp_path, limit_bytes=1 << 20)) == KEPT | {"summary.json"}


@pytest.mark.parametrize(
    "data,message",
    [
        (b"not an archive at all", "not a tar, tar.gz or zip archive"),
        (_tar(RUN).getvalue()[:60], "damaged or truncated"),
        (b"PK\x03\x04" + bytes(40), "damaged or truncated"),
    ],
    ids=["garbage", "truncated-gzip", "broken-zip"],
)
def test_damaged_archives_are_refused_as_such(data, message, tmp_path):
    with pytest.raises(InvalidRequest, match=message):
        unpack(io.BytesIO(data), tmp_path, limit_bytes=1 << 20)


def test_declared_sizes_past_the_limit_are_refused_before_unpacking(tmp_path):
    many = {f"adapter/part-{n}.bin": bytes(300) for n in range(10)}
    with pytest.raises(TooLarge, match="unpacks to more than 2000 bytes"):
        unpack(_tar({**RUN, **many}), tmp_path, limit_bytes=2000)
    assert not any(tmp_path.rglob("part-*"))


def test_a_member_twice_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in (("summary.json", b"{}"), ("summary.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    with pytest.raises(InvalidRequest, match="clashes with another one"):
        unpack(buffer, tmp_path, limit_bytes=1 << 20)


def test_a_run_that_failed_or_has_no_summary_is_not_imported(tmp_path):
    run = unpack(_tar({k: v for k, v in RUN.items() if k != "summary.json"}), tmp_path / "a", limit_bytes=1 << 20)
    with pytest.raises(InvalidRequest, match="no summary.json"):
        check_run(run, where="run")
    (run / "summary.json").write_text(json.dumps({"status": "failed", "base_model": "x"}))
    with pytest.raises(InvalidRequest, match="status is 'failed'"):
        check_run(run, where="run")
    (run / "summary.json").write_text("[1, 2")
    with pytest.raises(InvalidRequest, match="summary.json is not valid JSON"):
        check_run(run, where="run")
