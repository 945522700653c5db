"""The bottom layer: small helpers that know nothing of gates, agents or instances.

Errors, git, safe reads of agent-written files, appends that survive a kill, timing helpers. Every
other part of the supervisor may import this package; it imports nothing of ours but itself.
"""
