"""Errors a user can cause and fix: the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""

    exit_code = 1

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail  # shown before the one-line message, e.g. a log's tail


class ConfigError(UserError):
    """The cluster description is invalid."""

    exit_code = 2


class UsageError(UserError):
    """A bad option or argument value; exit 2, as for click's own usage errors."""

    exit_code = 2
