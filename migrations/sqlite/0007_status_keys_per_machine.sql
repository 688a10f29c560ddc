-- patchops site store, SQLite schema v7: a status message's idempotency
-- key is unique per machine, not across the site. An agent makes its own
-- keys; with one key space for every machine, a message of one machine
-- could make another machine's message with the same key pass for a
-- duplicate and be dropped. SQLite cannot change a primary key in place,
-- so the table is copied; every stored message is kept.
CREATE TABLE status_messages_v7 (
    key           TEXT    NOT NULL,
    machine_key   TEXT    NOT NULL,
    advertisement TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    exit_code     INTEGER,
    message       TEXT    NOT NULL,
    at_ms         BIGINT  NOT NULL,
    received_ms   BIGINT  NOT NULL,
    PRIMARY KEY (machine_key, key)
);

INSERT INTO status_messages_v7
    (key, machine_key, advertisement, state, exit_code, message, at_ms, received_ms)
SELECT key, machine_key, advertisement, state, exit_code, message, at_ms, received_ms
FROM status_messages;

DROP TABLE status_messages;

ALTER TABLE status_messages_v7 RENAME TO status_messages;

CREATE INDEX status_messages_machine ON status_messages (machine_key, at_ms);
