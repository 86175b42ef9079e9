"""The agent's small error tree: what the caller does decides the class."""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAIL",
    "EXIT_OK",
    "AgentError",
    "ConfigError",
    "Permanent",
    "Retryable",
]

# The command line's exit codes: done, failed (the reason is printed), the config is unusable.
EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration cannot be used; the message names the file, the key and the fix."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(file, problems)

    def __str__(self) -> str:
        lines = [f"{self.file}: invalid configuration"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class Retryable(AgentError):
    """Try again later: after `retry_after` seconds when the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.message = message
        self.retry_after = retry_after
        super().__init__(message, retry_after)

    def __str__(self) -> str:
        if self.retry_after is None:
            return self.message
        return f"{self.message} (retry in {self.retry_after:.1f}s)"


class Permanent(AgentError):
    """Retrying cannot help: the request is wrong. Carries the remote code and message."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(code, message, status)

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}"
