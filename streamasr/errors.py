"""Exceptions raised by streamasr; every message says what was received and what was expected."""

from __future__ import annotations


class StreamAsrError(Exception):
    """Base class for all streamasr errors."""


class AudioError(StreamAsrError):
    """Audio that cannot be read or used (missing, empty, corrupt, NaN, wrong dtype)."""


class ModelError(StreamAsrError):
    """A checkpoint that cannot be loaded or does not fit this engine."""


class ProtocolError(StreamAsrError):
    """A websocket client broke the wire protocol.

    ``code`` is the machine-readable error code sent to the client and ``close_code`` the
    websocket close code (1007 invalid data, 1008 policy violation, 1009 too big).
    """

    def __init__(self, code: str, message: str, close_code: int = 1008) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code
