"""The export's errors: both end `deraindrop export` with a message, never a traceback."""

from __future__ import annotations


class ExportError(Exception):
    """A user error (bad file, flag or folder); the message says which. Exit status 2."""


class VerificationFailed(ExportError):
    """The exported model is not close enough to the Keras float generator. Exit status 3."""
