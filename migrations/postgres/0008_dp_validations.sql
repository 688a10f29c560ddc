-- patchops site store, PostgreSQL schema v8: the last deep content validation
-- of each distribution point (`DistributionPoint.spec.validation`), run by
-- the site server that holds the `leader` lease and written only under
-- it, one upsert per validation. `outcome` is `ok` (every file's bytes
-- match its name), `problems` (files missing, damaged or not referenced:
-- `problems` counts them, `problem_files` is a JSON array of the first
-- few, each `{problem, file, detail}`) or `failed` (the library could
-- not be read: `message` says why). `repaired` counts the damaged files
-- removed so that the next reconcile copies them again (`--drift
-- correct`). Times are epoch milliseconds given by the caller.
CREATE TABLE dp_validations (
    dp            TEXT    PRIMARY KEY,
    path          TEXT    NOT NULL,
    started_ms    BIGINT  NOT NULL,
    finished_ms   BIGINT  NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('ok', 'problems', 'failed')),
    files_checked BIGINT  NOT NULL,
    bytes_checked BIGINT  NOT NULL,
    problems      BIGINT  NOT NULL,
    problem_files TEXT    NOT NULL,
    message       TEXT,
    repaired      BIGINT  NOT NULL,
    host          TEXT    NOT NULL,
    pid           BIGINT  NOT NULL
);
