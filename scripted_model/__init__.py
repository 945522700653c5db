"""A deterministic server that speaks the Anthropic Messages API from a scenario file.

Used by the tests and the no-key demo so the real `anthropic` SDK runs end to end offline.
"""

from scripted_model.scenario import Scenario, ScenarioError, Step, load_scenario
from scripted_model.server import ScriptedModelServer
from scripted_model.tokens import estimate_tokens

__all__ = ["Scenario", "ScenarioError", "ScriptedModelServer", "Step", "estimate_tokens", "load_scenario"]
