-- patchops site store, PostgreSQL schema v7: a status message's
-- idempotency key is unique per machine, not across the site. An agent
-- makes its own keys; with one key space for every machine, a message of
-- one machine could make another machine's message with the same key pass
-- for a duplicate and be dropped. Every stored message is kept.
ALTER TABLE status_messages DROP CONSTRAINT status_messages_pkey;

ALTER TABLE status_messages ADD PRIMARY KEY (machine_key, key);
