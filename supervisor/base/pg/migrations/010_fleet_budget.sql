-- The fleet's budget (supervisor/route/fleet_budget.py): caps every node's LLM requests reserve
-- against before they are forwarded and settle to real usage after. Times are the database's own.

-- One row per cap and period, e.g. 'week:2026-W23:tokens', 'day:2026-06-05:usd', 'project:demo:tokens'.
-- A request fits when spent + reserved + its worst case <= cap, checked with the row locked.
CREATE TABLE budget_caps (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('week', 'day', 'project')),
    key TEXT NOT NULL,
    unit TEXT NOT NULL CHECK (unit IN ('tokens', 'usd')),
    cap NUMERIC NOT NULL CHECK (cap >= 0),
    spent NUMERIC NOT NULL DEFAULT 0 CHECK (spent >= 0),
    reserved NUMERIC NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per running route (a node's process): its reservations are its own while it heartbeats.
-- A sweep deletes a holder whose heartbeat is older than its lease and settles its reservations at
-- their worst case; a reservation references its holder, so a swept holder can reserve no more
-- until it registers again.
CREATE TABLE budget_holders (
    holder TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    lease_s DOUBLE PRECISION NOT NULL CHECK (lease_s > 0),
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX budget_holders_node ON budget_holders (node);

-- Requests in flight: each row is deleted exactly once (settled, released or swept), by whoever
-- deletes it first; the deleter alone moves its amounts from `reserved` (to `spent`).
CREATE TABLE budget_reservations (
    id TEXT PRIMARY KEY,
    holder TEXT NOT NULL REFERENCES budget_holders (holder),
    caps TEXT[] NOT NULL,
    tokens BIGINT NOT NULL CHECK (tokens >= 0),
    usd NUMERIC NOT NULL CHECK (usd >= 0),
    run_id TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX budget_reservations_holder ON budget_reservations (holder);

-- The fleet's ledger: one row per reservation that ended (its id is unique: settled at most once).
CREATE TABLE budget_settlements (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    settled_by TEXT NOT NULL,
    how TEXT NOT NULL CHECK (how IN ('spent', 'released', 'swept')),
    caps TEXT[] NOT NULL,
    reserved_tokens BIGINT NOT NULL,
    reserved_usd NUMERIC NOT NULL,
    tokens BIGINT NOT NULL,
    usd NUMERIC NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    settled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
