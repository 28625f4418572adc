-- Approvals and permissions: paygate's users (OS accounts, identified by the kernel on the
-- control socket), their roles per channel, the periodic permission reviews, the payees each
-- channel has paid (for scrutiny), and what the approval policy decided for each batch.

CREATE TABLE users (
    name         TEXT    PRIMARY KEY,
    -- The OS account's uid when the user was added; NULL for a system identity.
    uid          INTEGER,
    -- A system identity (a channel's configured submitter): it holds only the submitter role.
    system       INTEGER NOT NULL DEFAULT 0 CHECK (system IN (0, 1)),
    created_at   TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    disabled_at  TEXT,
    disabled_by  TEXT
);

CREATE TABLE roles (
    id           INTEGER PRIMARY KEY,
    user_name    TEXT    NOT NULL REFERENCES users (name),
    role         TEXT    NOT NULL CHECK (role IN ('submitter', 'approver', 'admin', 'auditor')),
    -- A channel name, or '*' for every channel.
    channel      TEXT    NOT NULL,
    -- An approver's personal limit per batch: `50000` or `EUR:50000,JPY:7000000`.
    limit_amount TEXT,
    granted_by   TEXT    NOT NULL,
    granted_at   TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    last_used_at TEXT,
    UNIQUE (user_name, role, channel)
);

CREATE TABLE reviews (
    id           INTEGER PRIMARY KEY,
    reviewer     TEXT    NOT NULL,
    at           TEXT    NOT NULL,
    unused_days  INTEGER NOT NULL,
    roles        INTEGER NOT NULL,
    flagged      INTEGER NOT NULL
);

-- Every payee account a channel has sent money to, per currency: when first, and the largest
-- payment. Written when a batch is sent; read by the new-beneficiary and unusual-amount checks.
CREATE TABLE payees (
    channel          TEXT    NOT NULL,
    account          TEXT    NOT NULL,
    currency         TEXT    NOT NULL,
    max_amount_minor INTEGER NOT NULL,
    first_batch      INTEGER NOT NULL REFERENCES batches (id),
    first_paid_at    TEXT    NOT NULL,
    last_paid_at     TEXT    NOT NULL,
    PRIMARY KEY (channel, account, currency)
);

-- What the approval policy decided when the batch came in: how many distinct approvers it
-- needs and why (JSON array of reasons), and the debtor account it pays from (daily limits).
ALTER TABLE batches ADD COLUMN approvals_required INTEGER;
ALTER TABLE batches ADD COLUMN approval_reasons TEXT;
ALTER TABLE batches ADD COLUMN debtor_account TEXT;
-- The OS user who owned the dropped file, when the channel records a configured submitter:
-- they may not approve the batch either.
ALTER TABLE batches ADD COLUMN dropped_by TEXT;
CREATE INDEX batches_channel_created ON batches (channel, created_at);
CREATE INDEX audit_actor ON audit (actor);
CREATE INDEX audit_batch ON audit (batch_id);
