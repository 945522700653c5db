"""One error hierarchy for the trusted side; the CLI is the only place that turns these into exit codes."""


class OuroborosError(Exception):
    """Root of every error the supervisor or sandbox raises on purpose.

    The message must say what was wrong and what to do about it: the CLI prints it as is.
    """


class ConfigError(OuroborosError, ValueError):
    """A configuration file or option is missing or invalid."""
