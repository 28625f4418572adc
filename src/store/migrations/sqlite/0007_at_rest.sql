-- Payment data at rest: a payment's name, account number, reference and address are stored
-- together in `sealed`, encrypted (AES-256-GCM) under the data key numbered `enc_key`; the
-- plaintext columns are then empty. `enc_key` NULL: a row written before this migration,
-- still in those columns until the store encrypts it at the next start. Equality lookups use
-- `account_hmac`, a keyed hash (16 bytes) of the account number.
ALTER TABLE payments ADD COLUMN enc_key INTEGER;
ALTER TABLE payments ADD COLUMN sealed BLOB;
ALTER TABLE payments ADD COLUMN account_hmac BLOB;
-- No index on either: lookups go from one batch's payments (by batch) to payee_lookup (by its
-- key), and an index of a million random hashes made the insert of a 1M-row batch 9x slower.

-- The payees table kept account numbers in plaintext; its rows move here, keyed by the hash.
CREATE TABLE payee_lookup (
    channel          TEXT    NOT NULL,
    account_hmac     BLOB    NOT NULL CHECK (length(account_hmac) = 16),
    currency         TEXT    NOT NULL,
    max_amount_minor INTEGER NOT NULL,
    first_batch      INTEGER NOT NULL REFERENCES batches (id),
    first_paid_at    TEXT    NOT NULL,
    last_paid_at     TEXT    NOT NULL,
    PRIMARY KEY (channel, account_hmac, currency)
);

-- Every file paygate keeps for the audit, stored encrypted to the archive key.
CREATE TABLE archived (
    id        INTEGER PRIMARY KEY,
    batch_id  INTEGER REFERENCES batches (id),
    bank      TEXT,
    kind      TEXT    NOT NULL CHECK (kind IN ('source', 'rendered', 'sealed', 'return', 'result')),
    -- The name the file had (what `paygate export` restores).
    name      TEXT    NOT NULL,
    path      TEXT    NOT NULL,
    -- SHA-256 of the plaintext.
    sha256    TEXT    NOT NULL CHECK (length(sha256) = 64),
    at        TEXT    NOT NULL
);
CREATE INDEX archived_batch ON archived (batch_id);

-- Facts about the store itself: `data_key_check` ties the store to its data key file (a
-- keyed hash of a constant under the lookup key, which rotation never changes).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
