-- patchops site store, SQLite schema v5: the reconcile outcome of
-- `patchops server --manifests`, for `patchops status site` and the banner
-- of `status advertisements`. One row (id 1), written only by the server
-- that holds the `leader` lease, one upsert per reconcile. `status` is
-- `ok`, `drift` or `error`; `since_ms` is when it last changed; `problems`
-- is a JSON array of the invalid manifests' errors (file, line, column,
-- field, code, message). The applied state itself is never touched here:
-- an invalid or failed reconcile leaves it as it was. Times are epoch
-- milliseconds given by the caller.
CREATE TABLE reconcile_status (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    status              TEXT    NOT NULL CHECK (status IN ('ok', 'drift', 'error')),
    result              TEXT    NOT NULL
        CHECK (result IN ('applied', 'unchanged', 'drift', 'invalid', 'failed')),
    message             TEXT,
    problems            TEXT    NOT NULL,
    revision            TEXT,
    attempt_ms          BIGINT  NOT NULL,
    since_ms            BIGINT  NOT NULL,
    failures            BIGINT  NOT NULL,
    last_success_ms     BIGINT,
    last_apply_ms       BIGINT,
    last_apply_serial   BIGINT,
    last_apply_revision TEXT,
    host                TEXT    NOT NULL,
    pid                 BIGINT  NOT NULL
);
