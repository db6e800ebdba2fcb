-- Webhooks: topics, push subscriptions and published messages. A delivery is not a table of
-- its own: it is a job whose origin columns name the message and subscription it came from,
-- so one dispatcher, one lease, one retry policy and one attempts table serve every delivery.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE topics (
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE subscriptions (
    id                     TEXT PRIMARY KEY,
    namespace              TEXT NOT NULL,
    topic                  TEXT NOT NULL,
    name                   TEXT NOT NULL,
    url                    TEXT NOT NULL,
    -- JSON array of event-type patterns; empty means every event.
    event_types            TEXT NOT NULL,
    headers                TEXT NOT NULL,
    secret                 TEXT NOT NULL,
    -- During a rotation's grace period the old secret still signs.
    previous_secret        TEXT,
    previous_secret_until  INTEGER,
    retry                  TEXT NOT NULL,
    timeout_ms             INTEGER NOT NULL,
    success_codes          TEXT NOT NULL,
    fail_codes             TEXT,
    unsubscribe_on_gone    BOOLEAN NOT NULL,
    body_format            TEXT NOT NULL,
    meta                   TEXT,
    enabled                BOOLEAN NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    FOREIGN KEY (namespace, topic) REFERENCES topics (namespace, name) ON DELETE CASCADE
);
CREATE INDEX subscriptions_topic ON subscriptions (namespace, topic, id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    namespace        TEXT NOT NULL,
    topic            TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    payload          BLOB NOT NULL,
    idempotency_key  TEXT,
    fingerprint      TEXT NOT NULL,
    deliver_at       INTEGER NOT NULL,
    deliveries       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    FOREIGN KEY (namespace, topic) REFERENCES topics (namespace, name) ON DELETE CASCADE
);
CREATE UNIQUE INDEX messages_idempotency ON messages (namespace, topic, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_topic ON messages (namespace, topic, id);

-- Origin of a job that is a webhook delivery (all NULL for a plain job), and the two policy
-- points only deliveries have: statuses that fail at once, and unsubscribe on 410 Gone.
ALTER TABLE jobs ADD COLUMN topic TEXT;
ALTER TABLE jobs ADD COLUMN message_id TEXT;
ALTER TABLE jobs ADD COLUMN subscription_id TEXT;
ALTER TABLE jobs ADD COLUMN event_type TEXT;
ALTER TABLE jobs ADD COLUMN fail_codes TEXT;
ALTER TABLE jobs ADD COLUMN unsubscribe_on_gone BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX jobs_subscription ON jobs (subscription_id, id) WHERE subscription_id IS NOT NULL;
CREATE INDEX jobs_message ON jobs (message_id, id) WHERE message_id IS NOT NULL;
CREATE INDEX jobs_topic ON jobs (namespace, topic, id) WHERE topic IS NOT NULL;
