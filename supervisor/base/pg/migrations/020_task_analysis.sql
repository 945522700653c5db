-- The optional analysis of a queued task (supervisor/store/tasks/pg_analysis.py): an operator asks
-- for it (`supervisor fleet analyse`), a node takes it, asks the model through its metered route for
-- a category, a complexity (1-10) and a solvability (0-1), and re-prioritises the task with that
-- solvability. Times are the database's own.
ALTER TABLE tasks ADD COLUMN analysis_state TEXT CHECK (analysis_state IN ('pending', 'running', 'done', 'failed'));
ALTER TABLE tasks ADD COLUMN analysis_node TEXT;
ALTER TABLE tasks ADD COLUMN analysis_at TIMESTAMPTZ;
-- The model's answer as checked (category, complexity, solvability), or why it failed.
ALTER TABLE tasks ADD COLUMN analysis JSONB;
-- Requests waiting for a node, and takings whose node died (stale), in the order they are taken.
CREATE INDEX tasks_analysis ON tasks (analysis_at, id) WHERE analysis_state IN ('pending', 'running');
