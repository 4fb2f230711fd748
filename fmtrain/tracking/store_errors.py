"""What an error of the tracking store means, read from its type and status code, never from the
words of its message (which quote values, SQL and responses that may hold anything).

MLflow raises ``MlflowException`` with an ``error_code`` that it derives from the HTTP status of
a server's answer (401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 RESOURCE_DOES_NOT_EXIST, 503
TEMPORARILY_UNAVAILABLE, ...) or that a store sets itself. A server that does not answer, or keeps
answering "try later" (5xx, 429) until MLflow's retries are spent, shows as a ``requests`` error
(connection, timeout, retries exhausted) among the exception's causes; a local sqlite file that
cannot be written, as a ``sqlite3`` error whose result code says so.
"""

from __future__ import annotations

import enum
import sqlite3

import requests
from mlflow.exceptions import MlflowException


class Fault(enum.Enum):
    """What a store's error means for the one who asked."""

    UNREACHABLE = "cannot be reached"  # no answer now, or "try later": a journal waits for it
    UNAUTHENTICATED = "refused the credentials"
    FORBIDDEN = "denied permission"
    READ_ONLY = "cannot be written"  # a local file or folder
    MISSING = "does not exist"
    ALREADY_EXISTS = "exists already"
    REFUSED = "refused the request"  # a store's "bad request": the database's own refusal among others
    OTHER = "failed"


_BY_CODE = {
    "UNAUTHENTICATED": Fault.UNAUTHENTICATED, "CUSTOMER_UNAUTHORIZED": Fault.UNAUTHENTICATED,
    "PERMISSION_DENIED": Fault.FORBIDDEN,
    # Stores say "no such run" with one of these (a sqlite store's get_run: RESOURCE_DOES_NOT_EXIST;
    # some REST paths: INVALID_PARAMETER_VALUE for an id that names nothing).
    "RESOURCE_DOES_NOT_EXIST": Fault.MISSING, "NOT_FOUND": Fault.MISSING, "ENDPOINT_NOT_FOUND": Fault.MISSING,
    "RESOURCE_ALREADY_EXISTS": Fault.ALREADY_EXISTS, "ALREADY_EXISTS": Fault.ALREADY_EXISTS,
    "BAD_REQUEST": Fault.REFUSED, "INVALID_PARAMETER_VALUE": Fault.REFUSED,
    "TEMPORARILY_UNAVAILABLE": Fault.UNREACHABLE, "DEADLINE_EXCEEDED": Fault.UNREACHABLE,
    "REQUEST_LIMIT_EXCEEDED": Fault.UNREACHABLE, "RESOURCE_EXHAUSTED": Fault.UNREACHABLE,
}
# A request that got no usable answer, whatever MLflow wrapped it in.
_NO_ANSWER = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
              requests.exceptions.RetryError, requests.exceptions.ChunkedEncodingError,
              ConnectionError, TimeoutError)
# sqlite's primary result codes for a file that cannot be opened or written.
_SQLITE_CANNOT_WRITE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}


def causes(error: BaseException):
    """``error`` and every exception it was raised from or during (SQLAlchemy's ``orig`` too)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        original = getattr(error, "orig", None)
        if isinstance(original, BaseException) and id(original) not in seen:
            yield original
            seen.add(id(original))
        error = error.__cause__ or error.__context__


def classify(error: BaseException) -> Fault:
    """The Fault that ``error`` stands for."""
    found = Fault.OTHER
    for cause in causes(error):
        if isinstance(cause, _NO_ANSWER):
            return Fault.UNREACHABLE
        if isinstance(cause, sqlite3.IntegrityError):
            return Fault.ALREADY_EXISTS
        if isinstance(cause, sqlite3.Error) and (getattr(cause, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_CANNOT_WRITE:
            return Fault.READ_ONLY
        if isinstance(cause, MlflowException) and found is Fault.OTHER:
            found = _BY_CODE.get(cause.error_code, Fault.OTHER)
    return found


def is_unreachable(error: BaseException) -> bool:
    return classify(error) is Fault.UNREACHABLE
