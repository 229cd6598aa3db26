"""Model references: local folders, cached hub ids (offline), and clear misses."""

from __future__ import annotations

import shutil

import pytest

from backend.models import ModelNotFoundError, resolve_model


def test_local_folder_resolves_to_itself(tiny_model):
    assert resolve_model(tiny_model) == tiny_model


def test_cached_hub_id_resolves_offline(tiny_model, tmp_path, monkeypatch):
    # Lay the tiny model out exactly as the Hugging Face cache stores a downloaded snapshot.
    hub = tmp_path / "hub"
    snapshot = hub / "models--acme--tiny-chat" / "snapshots" / "0123456789abcdef"
    shutil.copytree(tiny_model, snapshot)
    (hub / "models--acme--tiny-chat" / "refs").mkdir()
    (hub / "models--acme--tiny-chat" / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model("acme/tiny-chat") == str(snapshot)


def test_a_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_a_miss_names_everything_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("acme/not-cached")
    message = str(err.value)
    assert "bundled names ['gemma3-270m', 'smollm2-135m']" in message
    assert "local path" in message and "Hugging Face cache for 'acme/not-cached'" in message
