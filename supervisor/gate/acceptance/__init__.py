"""Held-out acceptance: the candidate agent run for real, judged from outside its process.

See docs/acceptance.md. Kept import-free so `supervisor.gate.passes` can use the models without cycles.
"""
