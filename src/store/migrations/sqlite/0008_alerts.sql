-- Alerts: what needs a person. One row per alert; raised again within the repeat interval (from
-- when it was first raised) it is counted, not sent again; after it, it is a new alert. Each configured channel (webhook, email) has a delivery row that
-- stays pending, retried with backoff, until the channel took it: never dropped.
CREATE TABLE alerts (
    id             INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL,
    -- What it is about within its kind (a batch, a bank, a user, a path): the repeat key.
    subject        TEXT    NOT NULL,
    batch_id       INTEGER REFERENCES batches (id),
    severity       TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    summary        TEXT    NOT NULL,
    -- What to do about it.
    action         TEXT    NOT NULL,
    -- paygate users it is meant for (JSON list), besides the configured recipients.
    recipients     TEXT    NOT NULL,
    raised_at      TEXT    NOT NULL,
    last_raised_at TEXT    NOT NULL,
    times          INTEGER NOT NULL DEFAULT 1 CHECK (times >= 1),
    acked_at       TEXT,
    acked_by       TEXT
);
CREATE INDEX alerts_subject ON alerts (kind, subject);

CREATE TABLE alert_deliveries (
    id           INTEGER PRIMARY KEY,
    alert_id     INTEGER NOT NULL REFERENCES alerts (id),
    sink         TEXT    NOT NULL,
    -- abandoned: its channel was removed from the config (logged).
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'abandoned')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      TEXT    NOT NULL,
    last_error   TEXT,
    delivered_at TEXT
);
CREATE INDEX alert_deliveries_pending ON alert_deliveries (state, next_at);
