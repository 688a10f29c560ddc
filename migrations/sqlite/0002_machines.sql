-- patchops site store, SQLite schema v2: the site server's tables.
-- Times are epoch milliseconds given by the caller (the site server's clock).

-- Inventory. `id` is assigned by the store, never reused (AUTOINCREMENT) and
-- fits a u32; `key` is the lowercase name; `facts` is the Machine as JSON.
-- `updated_ms` moves only when the facts change.
CREATE TABLE machines (
    id                INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 4294967295),
    key               TEXT    NOT NULL UNIQUE CHECK (length(key) > 0),
    name              TEXT    NOT NULL,
    facts             TEXT    NOT NULL,
    updated_ms        BIGINT  NOT NULL,
    last_heartbeat_ms BIGINT
);

-- Agents' bearer tokens, by SHA-256 only. A revoked token stays, revoked.
CREATE TABLE machine_tokens (
    token_hash  TEXT    PRIMARY KEY,
    machine_key TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    revoked_ms  BIGINT
);

CREATE INDEX machine_tokens_machine_key ON machine_tokens (machine_key);

-- Client policy, one per machine, versioned.
CREATE TABLE policies (
    machine_id  BIGINT  PRIMARY KEY,
    version     BIGINT  NOT NULL CHECK (version >= 0),
    hash        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    updated_ms  BIGINT  NOT NULL
);

-- Status messages from agents, exactly once by their idempotency key.
CREATE TABLE status_messages (
    key           TEXT    PRIMARY KEY,
    machine_key   TEXT    NOT NULL,
    advertisement TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    exit_code     INTEGER,
    message       TEXT    NOT NULL,
    at_ms         BIGINT  NOT NULL,
    received_ms   BIGINT  NOT NULL
);

CREATE INDEX status_messages_machine ON status_messages (machine_key, at_ms);
