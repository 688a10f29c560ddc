-- patchops site store, SQLite schema v1.
-- Applied by src/store at open, tracked in patchops_migrations.

CREATE TABLE patchops_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    store_id   TEXT    NOT NULL,
    serial     BIGINT  NOT NULL CHECK (serial >= 0),
    site       TEXT,
    created_at TEXT    NOT NULL
);

INSERT INTO patchops_state (id, store_id, serial, site, created_at)
VALUES (
    1,
    -- a random version-4 UUID
    lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
        || substr(lower(hex(randomblob(2))), 2) || '-'
        || substr('89ab', 1 + (abs(random()) % 4), 1)
        || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
    0,
    NULL,
    strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
);

CREATE TABLE patchops_objects (
    kind           TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    spec           TEXT    NOT NULL,
    spec_hash      TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    owner          TEXT    NOT NULL CHECK (owner IN ('patchops', 'unmanaged')),
    file           TEXT,
    commit_id      TEXT,
    created_serial BIGINT  NOT NULL,
    updated_serial BIGINT  NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE patchops_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    serial      BIGINT  NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    command     TEXT    NOT NULL,
    commit_id   TEXT,
    dirty       BOOLEAN NOT NULL CHECK (dirty IN (0, 1)),
    plan_hash   TEXT    NOT NULL,
    added       BIGINT  NOT NULL,
    changed     BIGINT  NOT NULL,
    destroyed   BIGINT  NOT NULL,
    changes     TEXT    NOT NULL
);

CREATE INDEX patchops_history_serial ON patchops_history (serial);

-- The apply lock: at most one row (name = 'apply'). Times are epoch milliseconds
-- by the database's clock.
CREATE TABLE patchops_lock (
    name        TEXT    PRIMARY KEY,
    id          TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         BIGINT  NOT NULL,
    command     TEXT    NOT NULL,
    acquired_ms BIGINT  NOT NULL,
    expires_ms  BIGINT  NOT NULL
);
