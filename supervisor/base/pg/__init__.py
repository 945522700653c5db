"""The fleet's PostgreSQL plumbing: a connection pool, versioned migrations, clear errors. Knows nothing of tasks."""
