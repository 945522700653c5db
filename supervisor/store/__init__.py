"""What the supervisor keeps: the instance's layout and config, candidate records, the decision log,
the agent's journal as the supervisor writes it, status.json and the scorecard.

Imports only `supervisor.base` and the LLM route's ledger (for the scorecard's spend).
"""
