"""The error tree: every error tunebridge raises on purpose has one root and is mapped once — to an HTTP
status by the API, to an exit code by the CLI — while anything else is treated as the bug it is."""

from __future__ import annotations

import inspect

import pytest

import agents.intake
import agents.models
import backend.inference.batcher
import backend.inference.constrained
import backend.inference.decoding
import backend.inference.pool
import backend.services.datasets
import backend.signing
import backend.training.data
from backend import errors
from backend.cli import main

MODULES = [
    agents.intake,
    agents.models,
    backend.inference.batcher,
    backend.inference.constrained,
    backend.inference.decoding,
    backend.inference.pool,
    backend.services.datasets,
    backend.signing,
    backend.training.data,
]


def test_every_error_class_is_in_the_tree_and_none_is_a_value_error():
    found = [
        cls
        for module in MODULES
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == module.__name__ and cls.__name__.endswith("Error")
    ]
    assert len(found) >= 12
    assert all(issubclass(cls, errors.TunebridgeError) for cls in found), found
    assert not [cls for cls in found if issubclass(cls, (ValueError, RuntimeError, LookupError))]
    assert backend.services.datasets.DatasetTooLargeError.status == 413
    assert backend.inference.batcher.RequestTimeoutError.status == 503
    assert backend.signing.SignatureError.status == 401


def test_a_wrong_input_is_a_message_and_exit_code_2(capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    # no traceback
    assert err.strip() == "error: train: give --data FILE [FILE ...], --config FILE, or --resume RUN_DIR"


def test_debug_shows_the_traceback_of_an_expected_error(capsys):
    assert main(["--debug", "train"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "InvalidRequest: train: give --data" in err


def test_an_unexpected_error_shows_where_it_happened(monkeypatch, capsys):
    import backend.cli

    def broken(args):
        return {}["missing"]  # a bug, not a user's mistake

    parser = backend.cli.build_parser()
    monkeypatch.setattr(backend.cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["models"].set_defaults(func=broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'missing'" in err and "in broken" in err
    assert "tunebridge --debug" in err


@pytest.mark.parametrize(
    "cls,status,code",
    [
        (errors.InvalidRequest, 422, 2),
        (errors.TooLarge, 413, 2),
        (errors.NotFound, 404, 2),
        (errors.Conflict, 409, 2),
        (errors.Unauthorized, 401, 2),
        (errors.Unavailable, 503, 3),
        (errors.Upstream, 502, 3),
    ],
)
def test_each_kind_has_one_status_and_one_exit_code(cls, status, code):
    assert (cls.status, cls.exit_code) == (status, code) and issubclass(cls, errors.TunebridgeError)
