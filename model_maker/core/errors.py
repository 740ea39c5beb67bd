"""Errors that carry a message for the person running qatflow."""


class QatflowError(Exception):
    """A failure caused by input or settings, reported as one line without a traceback.

    Attributes:
      exit_code: process exit code the command line uses for it.
    """

    exit_code = 1


class UsageError(QatflowError):
    """Bad command-line usage or configuration (exit code 2)."""

    exit_code = 2


class DataError(QatflowError):
    """Input data that cannot be read or violates the rules in force (exit code 1)."""
