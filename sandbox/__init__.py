"""The only code that talks to the Docker engine.

Everything above this package describes a container with a `ContainerSpec` and gets back a
`RunResult` or a `RunningContainer`; nothing above it imports `docker`.
"""

from sandbox.errors import EngineUnavailableError, SandboxError, SandboxTimeoutError
from sandbox.spec import ContainerSpec, Limits, Mount, RunResult

__all__ = [
    "ContainerSpec",
    "Limits",
    "Mount",
    "RunResult",
    "SandboxError",
    "EngineUnavailableError",
    "SandboxTimeoutError",
]
