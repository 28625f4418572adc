-- paygate schema, designed for the whole pipeline. Amounts are integer minor units (never REAL);
-- times are RFC 3339 UTC text; states are the names of model::BatchState.

-- Every input file ever seen, by content. A file is processed at most once per channel.
CREATE TABLE files (
    id            INTEGER PRIMARY KEY,
    channel       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    sha256        TEXT    NOT NULL CHECK (length(sha256) = 64),
    size          INTEGER NOT NULL CHECK (size >= 0),
    received_at   TEXT    NOT NULL,
    archived_path TEXT,
    UNIQUE (channel, sha256)
);

-- One batch per accepted input file.
CREATE TABLE batches (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL UNIQUE REFERENCES files (id),
    channel       TEXT    NOT NULL,
    bank          TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('received', 'invalid', 'awaiting_approval',
                      'declined', 'approved', 'sealed', 'uploading', 'sent', 'accepted',
                      'completed', 'partially_rejected', 'rejected')),
    -- Assigned once; every re-render and every resend of the batch uses the same MsgId.
    msg_id        TEXT    UNIQUE,
    -- Fixed before the first upload attempt; a resend after a crash looks for this name.
    remote_name   TEXT,
    payment_count INTEGER NOT NULL CHECK (payment_count >= 0),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX batches_state ON batches (state);

CREATE TABLE payments (
    id              INTEGER PRIMARY KEY,
    batch_id        INTEGER NOT NULL REFERENCES batches (id),
    row_no          INTEGER NOT NULL,
    end_to_end_id   TEXT    NOT NULL,
    creditor_name   TEXT    NOT NULL,
    account_type    TEXT    NOT NULL CHECK (account_type IN ('iban', 'domestic')),
    account         TEXT    NOT NULL,
    agent_type      TEXT    CHECK (agent_type IN ('bic', 'cnaps')),
    agent           TEXT,
    bank_name       TEXT,
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    currency        TEXT    NOT NULL CHECK (length(currency) = 3),
    remittance      TEXT,
    execution_date  TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    UNIQUE (batch_id, end_to_end_id),
    UNIQUE (batch_id, row_no)
);

-- Every state change of a batch or a payment, with what caused it.
CREATE TABLE state_history (
    id          INTEGER PRIMARY KEY,
    batch_id    INTEGER NOT NULL REFERENCES batches (id),
    payment_id  INTEGER REFERENCES payments (id),
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    source      TEXT,
    reason_code TEXT,
    reason_text TEXT
);
CREATE INDEX state_history_batch ON state_history (batch_id);

-- Validation findings of a file, as reported to the user.
CREATE TABLE findings (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL REFERENCES files (id),
    severity      TEXT    NOT NULL CHECK (severity IN ('error', 'warning')),
    code          TEXT    NOT NULL,
    row_no        INTEGER,
    column_name   TEXT,
    column_letter TEXT,
    value         TEXT,
    message       TEXT    NOT NULL
);

-- Tamper-evident audit trail: each entry's hash covers its content and the previous hash.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at        TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    batch_id  INTEGER REFERENCES batches (id),
    details   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL UNIQUE
);

-- The audit trail is append-only.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
