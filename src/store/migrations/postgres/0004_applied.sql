-- A report counts as handled only once it has been applied: a crash between recording and
-- applying leaves it to be applied again (applying is idempotent).
ALTER TABLE reports ADD COLUMN applied_at TEXT;
