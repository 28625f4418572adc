-- Files received from banks: recorded (name, size, SHA-256) before the remote copy is removed,
-- so a file is never lost and never processed twice.
CREATE TABLE return_files (
    id          INTEGER PRIMARY KEY,
    bank        TEXT    NOT NULL,
    remote_name TEXT    NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    sha256      TEXT    NOT NULL CHECK (length(sha256) = 64),
    spool_path  TEXT    NOT NULL,
    received_at TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('received', 'opened', 'quarantined', 'processed')),
    signer      TEXT,
    reason      TEXT,
    opened_path TEXT,
    UNIQUE (bank, remote_name, sha256)
);

-- Every upload attempt's outcome (manual sends and batches).
CREATE TABLE uploads (
    id          INTEGER PRIMARY KEY,
    bank        TEXT    NOT NULL,
    batch_id    INTEGER REFERENCES batches (id),
    remote_name TEXT    NOT NULL,
    sha256      TEXT    NOT NULL CHECK (length(sha256) = 64),
    size        INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    at          TEXT    NOT NULL
);
