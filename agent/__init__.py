"""Ouroboros, the self-improving agent (untrusted: runs only inside the supervisor's containers)."""
