"""Errors services raise that the API maps to status codes in one place (backend/api/main.py)."""


class NotFoundError(LookupError):
    """A named thing (dataset, job, adapter) does not exist: HTTP 404."""


class ConflictError(ValueError):
    """The thing exists but is in a state that forbids the request: HTTP 409."""
