"""The one error hierarchy of qatflow: errors that carry a message for the person running it.

Every failure caused by input or settings is a :class:`QatflowError`; the command
line prints it as one line (the traceback only with ``-v``) and exits with the
class's ``exit_code``: 2 for usage and settings (:class:`UsageError` and its
subclasses), 1 for data and runtime failures (:class:`DataError`). Library code
never lets a bare ``ValueError`` about user input cross its boundary.
"""


class QatflowError(Exception):
    """A failure caused by input or settings, reported as one line without a traceback.

    Attributes:
      exit_code: process exit code the command line uses for it.
    """

    exit_code = 1


class UsageError(QatflowError):
    """Bad command-line usage or configuration (exit code 2)."""

    exit_code = 2


class SettingsError(UsageError):
    """A setting (a field of an options dataclass) with an invalid value (exit code 2).

    Attributes:
      key: dotted name of the setting (``qat.learning_rate``); grows a prefix as the
        error travels out of nested settings.
      reason: what is wrong with it, without the key.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)

    def prefixed(self, prefix: str) -> "SettingsError":
        """The same error with ``prefix`` in front of its key (``prefix.key``)."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return SettingsError(key, self.reason)


class DataError(QatflowError):
    """Input data that cannot be read or violates the rules in force (exit code 1)."""
