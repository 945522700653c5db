"""The scorecard per generation (store.py) over a small SQLite schema (tables.py)."""

from supervisor.scorecard.store import CandidateRow, GenerationCard, ScorecardStore

__all__ = ["CandidateRow", "GenerationCard", "ScorecardStore"]
