"""The agent's own error hierarchy (it never imports the supervisor); the CLI turns these into exit codes."""


class AgentError(Exception):
    """Root of every error the agent raises on purpose; the message says what was wrong and what to do."""


class AgentConfigError(AgentError, ValueError):
    """An option, environment variable or file the agent needs is missing or invalid."""


class MissingAPIKeyError(AgentConfigError):
    """No credential for the LLM."""


class GoalsError(AgentError, FileNotFoundError):
    """The goals file is missing or cannot be parsed."""


class JournalError(AgentError, OSError):
    """The journal cannot be read or written."""


class LLMError(AgentError, ConnectionError):
    """The model could not be reached or refused the request after retries."""


class ScenarioExhaustedError(LLMError):
    """A scripted model has played its whole scenario: nothing more will come; idle, do not crash."""


class BudgetExhaustedError(LLMError):
    """The supervisor's route refused: a spending cap is reached. Wait, do not retry at once."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ToolError(AgentError, RuntimeError):
    """A tool was called wrongly or failed; the message goes back to the model as an error result."""


class PathEscapeError(ToolError, PermissionError):
    """A path (or a symlink on it) leads outside the workspace."""


class ProtectedPathError(ToolError, PermissionError):
    """A write to the agent's own source was attempted outside the reflection phase."""
