-- Jobs: one outbound HTTP call each, with the delivery state machine.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    namespace         TEXT NOT NULL,
    key               TEXT,
    state             TEXT NOT NULL,
    method            TEXT NOT NULL,
    url               TEXT NOT NULL,
    headers           TEXT NOT NULL,
    body_kind         TEXT NOT NULL,
    body              BYTEA,
    retry             TEXT NOT NULL,
    timeout_ms        BIGINT NOT NULL,
    success_codes     TEXT NOT NULL,
    follow_redirects  BOOLEAN NOT NULL,
    deliver_at        BIGINT NOT NULL,
    next_attempt_at   BIGINT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    run_base          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    last_status       BIGINT,
    last_error        TEXT,
    last_attempt_at   BIGINT,
    meta              TEXT,
    fingerprint       TEXT NOT NULL,
    version           BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_namespace_key ON jobs (namespace, key) WHERE key IS NOT NULL;
-- One time index serves firing (scheduled) and lease reclaim (in_flight).
CREATE INDEX jobs_due ON jobs (next_attempt_at) WHERE state IN ('scheduled', 'in_flight');
CREATE INDEX jobs_namespace_id ON jobs (namespace, id);

CREATE TABLE attempts (
    id                  TEXT PRIMARY KEY,
    job_id              TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number              BIGINT NOT NULL,
    started_at          BIGINT NOT NULL,
    duration_ms         BIGINT NOT NULL,
    request_method      TEXT NOT NULL,
    request_url         TEXT NOT NULL,
    request_headers     TEXT NOT NULL,
    request_body_bytes  BIGINT NOT NULL,
    response_status     BIGINT,
    response_headers    TEXT NOT NULL,
    response_body       BYTEA,
    response_truncated  BOOLEAN NOT NULL,
    error               TEXT,
    outcome             TEXT NOT NULL
);
CREATE INDEX attempts_job ON attempts (job_id, id);
