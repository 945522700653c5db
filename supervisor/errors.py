"""One error hierarchy for the trusted side; the CLI is the only place that turns these into exit codes."""


from sandbox.errors import OuroborosError

__all__ = ["ConfigError", "OuroborosError"]


class ConfigError(OuroborosError, ValueError):
    """A configuration file or option is missing or invalid."""
