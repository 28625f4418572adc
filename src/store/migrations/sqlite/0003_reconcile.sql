-- Bank reports (pain.002, camt.053/054, result files) as received, matched or not. A report
-- that matches nothing is kept and shown, never dropped.
CREATE TABLE reports (
    id              INTEGER PRIMARY KEY,
    source          TEXT    NOT NULL,
    sha256          TEXT    NOT NULL CHECK (length(sha256) = 64),
    kind            TEXT    NOT NULL,
    msg_id          TEXT,
    original_msg_id TEXT,
    batch_id        INTEGER REFERENCES batches (id),
    received_at     TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    UNIQUE (sha256)
);

-- The bank's latest word on each payment.
ALTER TABLE payments ADD COLUMN status_code TEXT;
ALTER TABLE payments ADD COLUMN reason_code TEXT;
ALTER TABLE payments ADD COLUMN reason_text TEXT;
ALTER TABLE payments ADD COLUMN bank_reference TEXT;
ALTER TABLE payments ADD COLUMN updated_at TEXT;
