"""The one error type for mistakes a user can fix, and the exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CASES_FAILED = 1  # --strict: a case failed or was skipped
EXIT_USER_ERROR = 2  # bad suite, bad option, missing file
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Something the user can fix. Caught once in the CLI: message, no traceback.

    ``problems`` holds one line per problem (``file:line: key.path: message``).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])

    def lines(self) -> list[str]:
        return self.problems or [str(self)]
