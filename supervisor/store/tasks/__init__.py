"""The task queue: what the agent works on for someone (docs/tasks.md).

`models` holds the records and the state machine, `queue` the interface every implementation
keeps (tests/tasks/test_queue_contract.py holds each to it), `sqlite_queue` the embedded default.
"""
