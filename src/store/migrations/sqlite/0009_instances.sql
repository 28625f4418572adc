-- Several instances on one store (PostgreSQL; on SQLite there is one, recorded the same way).
-- Times of leases are milliseconds since 1970 by the database's clock, never a host's: hosts
-- whose clocks disagree still agree on who holds what.
CREATE TABLE instances (
    -- host:pid:random, new at every start.
    id            TEXT    PRIMARY KEY,
    host          TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    version       TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    heartbeat_ms  INTEGER NOT NULL,
    -- Past this the instance is dead and what it held is free.
    lease_until   INTEGER NOT NULL,
    stopped_at    TEXT
);

-- A batch's next step is claimed: by whom and until when (renewed while it runs).
ALTER TABLE batches ADD COLUMN claimed_by TEXT;
ALTER TABLE batches ADD COLUMN lease_until INTEGER;

-- Per bank, the one instance that polls its return files.
CREATE TABLE pollers (
    bank        TEXT    PRIMARY KEY,
    claimed_by  TEXT    NOT NULL,
    lease_until INTEGER NOT NULL
);

-- A sealed file's bytes, for the instance that sends a batch another one sealed (PostgreSQL
-- stores them; an embedded store's one instance reads its own outbox).
CREATE TABLE sealed_files (
    batch_id  INTEGER PRIMARY KEY REFERENCES batches (id),
    bytes     BLOB    NOT NULL
);
