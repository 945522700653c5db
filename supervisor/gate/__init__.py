"""What may reach `main`: the container passes, held-out acceptance, the tamper screen, the
compare-and-swap merge, rollback, recovery after a kill, and the Gatekeeper that orders them.

Imports `supervisor.store`, `supervisor.base` and `sandbox`; never the loop or the presentation.
"""
