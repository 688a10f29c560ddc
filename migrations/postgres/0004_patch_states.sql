-- patchops site store, PostgreSQL schema v4: patch states (compliance data).
-- One row per (machine, bulletin, product), as SMS's Win32_PatchState:
-- the applicability engine's result for the machine's last scan. `product`
-- is '' for a bulletin none of whose products the machine has. Times are
-- epoch milliseconds given by the caller.
CREATE TABLE patch_states (
    machine_key  TEXT    NOT NULL,
    bulletin     TEXT    NOT NULL,
    product      TEXT    NOT NULL,
    q_numbers    TEXT    NOT NULL,
    title        TEXT,
    status       TEXT    NOT NULL
        CHECK (status IN ('installed', 'missing', 'notApplicable', 'unknown')),
    reboot       TEXT    NOT NULL,
    scan_agent   TEXT    NOT NULL,
    scan_time_ms BIGINT  NOT NULL,
    patch        TEXT,
    reason       TEXT    NOT NULL,
    PRIMARY KEY (machine_key, bulletin, product)
);

CREATE INDEX patch_states_bulletin ON patch_states (bulletin);
