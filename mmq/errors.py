"""The one error family every layer raises.

Each kind says what went wrong from the caller's side, so a producer, the CLI and the
HTTP API can each react to it without knowing which layer raised it. Each class says what
it means; `kind` is its name on the wire (a failed job's `error_kind`) and `exit_code` the
`mmq` command's exit status. Anything else that escapes is a bug in mmq: it is reported as
kind `error`, exit status 1.
"""

from __future__ import annotations

from typing import ClassVar


class MmqError(Exception):
    """Root of every error mmq raises on purpose. `str(error)` is the message for a user."""

    kind: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1


class InvalidInput(MmqError, ValueError):
    """An item's image, text, video or metadata that cannot be used: it fails alone."""

    kind = "invalid_input"
    exit_code = 2


class BadRequest(MmqError, ValueError):
    """A request or setting mmq cannot serve as given (its other parts are not looked at)."""

    kind = "bad_request"
    exit_code = 3


class NotFound(MmqError, LookupError):
    """What the request names does not exist."""

    kind = "not_found"
    exit_code = 4


class Conflict(MmqError):
    """What the request names exists, but in a state this request cannot use."""

    kind = "conflict"
    exit_code = 5


class WrongModel(Conflict):
    """A collection bound to a model other than this worker's: a worker of `model` can
    serve it (a search is sent on to one: workers/forward.py)."""

    def __init__(self, message: str, model: str = "") -> None:
        super().__init__(message)
        self.model = model


class Unavailable(MmqError):
    """A server, worker, device or the database schema is missing or not answering."""

    kind = "unavailable"
    exit_code = 6


class JobTimeout(MmqError, TimeoutError):
    """A wait for a job ended first; the job itself goes on."""

    kind = "timeout"
    exit_code = 7


def describe(exc: BaseException) -> str:
    """The one way an error is written down for a user (an item's error, a job's error):
    mmq's own errors by their message, anything else (a bug) with its type."""
    if isinstance(exc, MmqError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}".rstrip(": ")
