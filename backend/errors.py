"""The errors tunebridge raises on purpose, as one tree.

Each says what was wrong and where, for the person who can fix it. The API maps them to HTTP once
(`status`, in backend/api/main.py); the command lines map them to exit codes once (`exit_code`).
Anything outside this tree is a bug: the API answers 500 and logs it, the CLI shows its traceback.
"""

from __future__ import annotations


class TunebridgeError(Exception):
    """Root: a failure explained by its message."""

    status = 500
    exit_code = 1


class InvalidRequest(TunebridgeError):
    """What was given is wrong: an option, a schema, a data file, a document. The message names the
    field, file or line and what was expected."""

    status = 422
    exit_code = 2


class TooLarge(InvalidRequest):
    """Past a size limit (the message names the limit and its setting)."""

    status = 413


class NotFound(TunebridgeError):
    """A named thing (dataset, job, adapter, model, document) does not exist."""

    status = 404
    exit_code = 2


class Conflict(TunebridgeError):
    """The thing exists, but its state forbids the request (a finished job, a name in use)."""

    status = 409
    exit_code = 2


class Unauthorized(TunebridgeError):
    """A missing or wrong credential or signature."""

    status = 401
    exit_code = 2


class Unavailable(TunebridgeError):
    """Not answered now (a timeout, no worker, a model server that is down); retrying later may work."""

    status = 503
    exit_code = 3


class Upstream(TunebridgeError):
    """A server tunebridge calls (vLLM, a model endpoint) answered with an error."""

    status = 502
    exit_code = 3


class ClientGone(TunebridgeError):
    """The caller closed its connection; its request was dropped (nobody reads the answer)."""

    status = 499
