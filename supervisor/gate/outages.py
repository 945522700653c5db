"""The engine's and the disk's weather during a gate: never the candidate's fault, never a verdict.

A gate the container engine failed (a pass it could not run, or an engine that stopped answering)
is tried again after a pause that doubles, and only after `INFRA_TRIES` such failures recorded as an
infrastructure error that says nothing about the proposal. A write that fails while the disk is
(nearly) full raises `DiskFullError` instead of rejecting the candidate; gating resumes by itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.engine import Engine
from supervisor.base.appendfile import DiskFullError, is_disk_full
from supervisor.base.backoff import Backoff
from supervisor.base.errors import OuroborosError
from supervisor.store.gate_results import GateResult

# A gate the engine failed is tried again after a pause that doubles (5, 10, 20, 40 s): a restart
# takes seconds to tens of seconds, and a stopping engine still answers pings while it refuses
# containers, so the tries must span the restart rather than one second of it.
INFRA_BACKOFF_S = 5.0
INFRA_BACKOFF_MAX_S = 60.0
ENGINE_BACKOFF = Backoff(0.5, 10.0)  # asking an engine that does not answer (the default wait)
INFRA_TRIES = 5  # gate runs that fail for the engine's reasons before "infrastructure error"
MIN_FREE_BYTES = 4 * 1024 * 1024  # below this a failed write is a full disk, whatever git printed

# Called when a gate failed for the engine's reasons, with the least pause to take first; True once the
# engine answers again, False to give up for now (a stop came).
EngineWait = Callable[[float], bool]


class GateInterruptedError(OuroborosError, RuntimeError):
    """The engine was gone and a stop came while waiting for it: the candidate stays resumable."""


def infra_backoff_s(tries: int) -> float:
    """The pause before trying again a gate the engine has failed `tries` times."""
    return Backoff(INFRA_BACKOFF_S, INFRA_BACKOFF_MAX_S).delay(max(tries - 1, 0))


def engine_failed(result: GateResult, engine: Engine) -> bool:
    """The engine, not the candidate, failed this gate: a pass it could not run, or it stopped answering."""
    if result.passed:
        return False
    if any(p.infrastructure for p in result.passes):  # set by the gate for engine errors only
        return True
    return not engine.ping()


def wait_for_engine(engine: Engine, pause_s: float = 0.0, limit_s: float = 120) -> bool:
    """The default wait (a supervisor gives its own, which a stop interrupts): pause, then back off until
    the engine answers."""
    time.sleep(pause_s)
    deadline, delays = time.monotonic() + limit_s, ENGINE_BACKOFF.delays()
    while not engine.ping():
        if time.monotonic() > deadline:
            return True  # try again anyway: after INFRA_TRIES it is recorded, never blamed
        time.sleep(next(delays))
    return True


def disk_full(state_dir: Path) -> bool:
    """Less than MIN_FREE_BYTES left where the state lives (a failed write there is then the disk's fault)."""
    try:
        info = os.statvfs(state_dir)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < MIN_FREE_BYTES


def raise_if_disk_full(exc: BaseException, state_dir: Path) -> None:
    """A full disk is never the candidate's fault: raise DiskFullError instead of a verdict."""
    if is_disk_full(exc) or disk_full(state_dir):
        raise DiskFullError(
            28, f"no space left under {state_dir} ({exc}); free disk space, gating resumes by itself"
        ) from exc
