-- The fleet's task queue (supervisor/store/tasks/pg_queue.py) and its nodes (supervisor/store/fleet_nodes.py).
-- Times are the database's own (now()); a node's clock is never written here.

CREATE TABLE projects (
    name TEXT PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    source TEXT NOT NULL,
    config JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project TEXT NOT NULL REFERENCES projects (name),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    base_commit TEXT NOT NULL,
    fail_to_pass JSONB NOT NULL,
    pass_to_pass JSONB,
    test_patch TEXT NOT NULL,
    priority INTEGER NOT NULL,
    external_id TEXT,
    source TEXT NOT NULL,
    state TEXT NOT NULL CHECK (
        state IN ('queued', 'running', 'judging', 'passed', 'failed', 'gave-up', 'infrastructure', 'cancelled')
    ),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    fence BIGINT NOT NULL DEFAULT 0,
    worker TEXT,
    lease_expires_at TIMESTAMPTZ,
    result_commit TEXT,
    result_branch TEXT,
    summary TEXT,
    verdict JSONB,
    note TEXT,
    -- For the prioritisation step: the factors (health, impact, solvability, urgency) and how the
    -- priority was computed from them; metadata is an import's own fields (language, labels, ...).
    factors JSONB,
    priority_breakdown JSONB,
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    CHECK ((state IN ('running', 'judging')) = (worker IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The claim query reads queued tasks in claim order from this index's 'queued' part, so a claim
-- costs the same with 1,000 or 1,000,000 queued, however many have finished or are held; its
-- prefix serves every lookup by state (counts, `find`).
CREATE INDEX tasks_claim ON tasks (state, priority DESC, id);
-- Held tasks whose lease ran out (claimable by another node; a reaper, `fleet status`).
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state IN ('running', 'judging');
CREATE INDEX tasks_project ON tasks (project, id);
CREATE INDEX tasks_worker ON tasks (worker) WHERE worker IS NOT NULL;
CREATE UNIQUE INDEX tasks_external ON tasks (project, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE attempts (
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    number INTEGER NOT NULL,
    fence BIGINT NOT NULL,
    worker TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ,
    ended_as TEXT,
    reason TEXT,
    result_commit TEXT,
    tokens BIGINT NOT NULL DEFAULT 0,
    verdict JSONB,
    refused_late BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (task_id, number)
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    home TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    draining BOOLEAN NOT NULL DEFAULT false
);
