"""What every part of a running supervisor shares: the instance, its config, the engine, the stop flag.

Made once by the event loop and handed to each part's constructor as `ctx`; each part still takes
the collaborators only it uses (the gatekeeper, the agent's process, callbacks) by keyword. The
supervisor's status is not here: only the event loop changes it (`Supervisor.transition`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sandbox.engine import Engine
from supervisor.store.instance import Instance, InstanceConfig


class StopFlag:
    """Set by SIGTERM, SIGINT or `supervisor stop`; every wait of the supervisor is cut short by it."""

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        self.requested = True

    def pause(self, seconds: float) -> bool:
        """Wait without making a stop request wait too; True if one came."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.requested


@dataclass(frozen=True)
class LoopContext:
    """The shared collaborators of one `supervisor start`, fixed for the run."""

    instance: Instance
    config: InstanceConfig
    engine: Engine
    stop: StopFlag
