"""This supervisor as a node of the fleet (docs/fleet.md): registered, heartbeating, draining when asked.

Only with `[fleet] database`. Leases are decided by the database's clock; this node only says it is
alive every `heartbeat_s` and learns whether the operator asked it to drain (finish its task, claim
no more). PostgreSQL unreachable: the node keeps its agent running, claims nothing, and tries again
at the next heartbeat; it never stops for it. A heartbeat that finds no row (an operator removed the
node) registers it again before it claims anything.
"""

from __future__ import annotations

import logging
import socket
import time
from importlib import metadata

from supervisor.base.pg.errors import DatabaseError
from supervisor.base.pg.pool import Database
from supervisor.base.throttle import Throttle
from supervisor.store.fleet_nodes import NodeInfo, NodeNameTaken, heartbeat_state, register_node

RETRY_S = 10.0  # how soon an unreachable database is tried again (a heartbeat is far longer)
log = logging.getLogger(__name__)


class FleetNode:
    def __init__(self, database: Database, *, name: str, home: str, heartbeat_s: float) -> None:
        self.db = database
        self.name = name
        self.home = home
        self.heartbeat_s = heartbeat_s
        self.registered = False
        self.reachable = False
        self.draining = False
        self._beat_at = -float("inf")
        self._warned = Throttle(60.0)

    @property
    def live_s(self) -> float:
        """How recently another supervisor must have heartbeated for its name to count as taken."""
        return 2 * self.heartbeat_s + RETRY_S

    def start(self) -> None:
        """Register now (NodeNameTaken when another live supervisor has this name: the start stops);
        an unreachable database only delays it to a later tick."""
        self._beat(refuse_taken=True)

    def tick(self) -> None:
        wait = self.heartbeat_s if self.reachable and self.registered else RETRY_S
        if time.monotonic() - self._beat_at >= wait:
            self._beat()

    def may_claim(self) -> bool:
        """Claim only while registered, reachable and not draining."""
        return self.registered and self.reachable and not self.draining

    def lost_database(self, exc: DatabaseError) -> None:
        """A task step found the database gone: claims pause until a heartbeat gets through."""
        self.reachable = False
        if self._warned.allow("unreachable"):
            log.warning("fleet database unreachable (%s); no task is claimed until it answers", exc)

    def _beat(self, *, refuse_taken: bool = False) -> None:
        self._beat_at = time.monotonic()
        try:
            state = heartbeat_state(self.db, self.name) if self.registered else None
            if state is None:
                info = NodeInfo(id=self.name, host=_host(), home=self.home, version=_version())
                node = register_node(self.db, info, live_s=self.live_s)
                state = node.draining
                log.info("fleet node %s registered", self.name)
            self.registered, self.reachable, self.draining = True, True, state
        except NodeNameTaken as exc:
            if refuse_taken:
                raise
            self.registered, self.reachable = False, True  # claims nothing until the name is free again
            if self._warned.allow("taken"):
                log.error("fleet node not registered: %s", exc)
        except DatabaseError as exc:
            self.lost_database(exc)


def _host() -> str:
    return socket.gethostname()[:255] or "host"


def _version() -> str:
    try:
        return metadata.version("ouroboros")
    except metadata.PackageNotFoundError:
        return "unknown"
