"""User-facing errors.

Every problem a user can cause (a bad file, an unknown name, a wrong option) raises a subclass of
:class:`CnnlabError`. The command line turns these into one line on stderr and a non-zero exit
code; Python callers can catch them like any other exception.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """Base class of all errors that describe a user's mistake rather than a bug."""


class DataError(CnnlabError, ValueError):
    """A data file or folder is missing, malformed or inconsistent."""


class DownloadError(DataError):
    """A file could not be fetched from any mirror, or failed its checksum."""


class UnknownNameError(CnnlabError, KeyError):
    """An unknown model, dataset or option name; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class CheckpointError(CnnlabError, ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


class ConfigError(CnnlabError, ValueError):
    """A configuration file or ``--key=value`` override is invalid."""


def unknown_name(kind: str, name: str, known: list[str]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists the closest known names."""
    import difflib

    close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(known)[:12])}"
    if not close and len(known) > 12:
        hint += ", ..."
    return UnknownNameError(f"unknown {kind} '{name}'{hint}")


class CnnlabWarning(UserWarning):
    """Something a user should know that does not stop the work (the command line prints it in one line)."""
