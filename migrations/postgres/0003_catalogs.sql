-- patchops site store, PostgreSQL schema v3: the sync host's catalogs.
-- Times are epoch milliseconds given by the caller.

-- Every verified version of every catalog, as fetched. `summary` is the
-- readable summary of this version (one line per bulletin when the caller
-- can parse the catalog), `diff` the lines that changed since the previous
-- version. Unverified content is never stored.
CREATE TABLE catalog_versions (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url           TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    fetched_ms    BIGINT  NOT NULL,
    size          BIGINT  NOT NULL CHECK (size >= 0),
    bytes         BYTEA   NOT NULL,
    summary       TEXT    NOT NULL,
    diff          TEXT    NOT NULL
);

CREATE INDEX catalog_versions_url ON catalog_versions (url, id);

-- The synchronization status of each catalog URL: the last attempt, the
-- last success, the last error (never a secret), how many attempts in a
-- row failed, and when the next attempt is due.
CREATE TABLE catalog_sync_status (
    url                  TEXT    PRIMARY KEY,
    kind                 TEXT    NOT NULL,
    last_attempt_ms      BIGINT  NOT NULL,
    last_success_ms      BIGINT,
    last_error           TEXT,
    consecutive_failures BIGINT  NOT NULL CHECK (consecutive_failures >= 0),
    next_attempt_ms      BIGINT  NOT NULL
);
