"""Typed request errors, one HTTP status each: every request ends in a result or one of these."""

from __future__ import annotations


class ServeError(Exception):
    """Base of request-level errors. ``status`` is the HTTP status the client receives."""

    status = 500

    def __init__(self, message: str, *, retry_after_s: float | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.reason = reason  # a machine-readable cause, e.g. "shed" or "rate_limited"


class BadRequest(ServeError):
    status = 400


class Unauthorized(ServeError):
    status = 401


class Forbidden(ServeError):
    status = 403


class NotFound(ServeError):
    status = 404


class PayloadTooLarge(ServeError):
    status = 413


class TooManyRequests(ServeError):
    status = 429


class ModelFailed(ServeError):
    status = 500


class Unavailable(ServeError):
    status = 503


class DeadlineExceeded(ServeError):
    status = 504
