"""Work for someone: project mirrors, task work areas, task verdicts and delivery (docs/tasks.md).

Above the gate (it reuses the gate's snapshot and container passes), below the loop (which decides
when a task starts and ends).
"""
