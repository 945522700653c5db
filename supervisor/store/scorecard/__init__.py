"""The scorecard per generation: the store (store.py), its SQLite tables (tables.py), record parsing
(records.py) and what it hands out (models.py)."""

from supervisor.store.scorecard.models import CandidateRow, GenerationCard
from supervisor.store.scorecard.store import ScorecardStore

__all__ = ["CandidateRow", "GenerationCard", "ScorecardStore"]
