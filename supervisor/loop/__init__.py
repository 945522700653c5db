"""`supervisor start`: the event loop and what it drives (the agent's container and probation, the
outbox and intake, the LLM route it serves, notifications).

Imports the gate, the store, the route and the helpers; only `cli` and `console` import it.
"""
