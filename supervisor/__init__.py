"""The trusted supervisor: gates the agent's self-modifications and runs it in containers."""
