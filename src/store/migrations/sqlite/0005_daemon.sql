-- no-transaction
-- The daemon: claims of input files, re-admission of duplicates, submitters, approvals, sealed
-- files, and the `expired` state. SQLite cannot change a CHECK or UNIQUE constraint in place,
-- so `files` and `batches` are rebuilt the way the SQLite manual prescribes (foreign keys off,
-- one transaction, foreign_key_check before commit).
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE files_new (
    id            INTEGER PRIMARY KEY,
    channel       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    sha256        TEXT    NOT NULL CHECK (length(sha256) = 64),
    size          INTEGER NOT NULL CHECK (size >= 0),
    received_at   TEXT    NOT NULL,
    archived_path TEXT,
    -- The name under processing/ that the daemon gave the file when it claimed it.
    claim         TEXT    UNIQUE,
    -- 0 for a file's first admission; n for its n-th re-admission by an admin.
    admission     INTEGER NOT NULL DEFAULT 0 CHECK (admission >= 0),
    UNIQUE (channel, sha256, admission)
);
INSERT INTO files_new (id, channel, name, sha256, size, received_at, archived_path)
    SELECT id, channel, name, sha256, size, received_at, archived_path FROM files;
DROP TABLE files;
ALTER TABLE files_new RENAME TO files;

CREATE TABLE batches_new (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL UNIQUE REFERENCES files (id),
    channel       TEXT    NOT NULL,
    bank          TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('received', 'invalid', 'awaiting_approval',
                      'declined', 'expired', 'approved', 'sealed', 'uploading', 'sent', 'accepted',
                      'completed', 'partially_rejected', 'rejected')),
    msg_id        TEXT    UNIQUE,
    remote_name   TEXT,
    payment_count INTEGER NOT NULL CHECK (payment_count >= 0),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    -- The OS user who dropped the file (or the channel's configured submitter).
    submitter     TEXT,
    -- The sealed file as archived at `sealed`: every (re)send uses exactly these bytes.
    sealed_path   TEXT,
    sealed_sha256 TEXT CHECK (sealed_sha256 IS NULL OR length(sealed_sha256) = 64)
);
INSERT INTO batches_new (id, file_id, channel, bank, state, msg_id, remote_name, payment_count,
                         created_at, updated_at)
    SELECT id, file_id, channel, bank, state, msg_id, remote_name, payment_count, created_at,
           updated_at FROM batches;
DROP TABLE batches;
ALTER TABLE batches_new RENAME TO batches;
CREATE INDEX batches_state ON batches (state);

-- The payee's postal address (JSON), so that a batch renders from the store alone.
ALTER TABLE payments ADD COLUMN creditor_address TEXT;

-- Approvals given: one per person and batch.
CREATE TABLE approvals (
    id        INTEGER PRIMARY KEY,
    batch_id  INTEGER NOT NULL REFERENCES batches (id),
    approver  TEXT    NOT NULL,
    at        TEXT    NOT NULL,
    comment   TEXT,
    UNIQUE (batch_id, approver)
);

-- An admin's permission to process a file whose content was seen before, once.
CREATE TABLE readmissions (
    id        INTEGER PRIMARY KEY,
    channel   TEXT    NOT NULL,
    sha256    TEXT    NOT NULL CHECK (length(sha256) = 64),
    by_user   TEXT    NOT NULL,
    at        TEXT    NOT NULL,
    reason    TEXT,
    used_by   INTEGER REFERENCES files (id)
);

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
