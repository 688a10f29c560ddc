-- patchops site store, PostgreSQL schema v6: a counter of inventory
-- changes. A site server must notice inventory written by someone else (an
-- import, another server) and reload; it compares this one row with the
-- value it saw after its own last write, instead of scanning every
-- machine. The trigger bumps it once per statement that adds or removes
-- machines or changes a machine's key, name or facts — not on heartbeats.
CREATE TABLE inventory_serial (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    serial  BIGINT  NOT NULL
);

INSERT INTO inventory_serial (id, serial) VALUES (1, 0);

-- The counter beside the machines table that fired, whatever the
-- session's search_path: a store lives in one schema of its own.
CREATE FUNCTION patchops_bump_inventory_serial() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE %I.inventory_serial SET serial = serial + 1 WHERE id = 1',
                   TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;

CREATE TRIGGER machines_changed
    AFTER INSERT OR DELETE OR UPDATE OF key, name, facts ON machines
    FOR EACH STATEMENT EXECUTE FUNCTION patchops_bump_inventory_serial();
