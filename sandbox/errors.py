"""Errors raised by the sandbox; each subclasses the matching builtin so callers can catch either."""


class OuroborosError(Exception):
    """Root of every error the supervisor or sandbox raises on purpose.

    It lives here because `sandbox` imports nothing from `supervisor`; `supervisor.base.errors`
    re-exports it. The message must say what was wrong and what to do about it: the CLI prints
    it as is.
    """


class SandboxError(OuroborosError):
    """A container could not be created, run or cleaned up as asked."""


class EngineUnavailableError(SandboxError, ConnectionError):
    """No Docker engine answers."""


class EngineAccessError(SandboxError, PermissionError):
    """A Docker engine is there, but this user may not talk to it (the socket's permissions)."""


class SandboxTimeoutError(SandboxError, TimeoutError):
    """A deadline passed; carries whatever output was captured."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class ImageBuildError(SandboxError):
    """An image could not be built or its base could not be made."""
