-- patchops site store, SQLite schema v6: a counter of inventory changes.
-- A site server must notice inventory written by someone else (an import,
-- another server) and reload; it compares this one row with the value it
-- saw after its own last write, instead of scanning every machine. The
-- triggers bump it on every machine added or removed and on every change
-- of a machine's key, name or facts — not on heartbeats.
CREATE TABLE inventory_serial (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    serial  BIGINT  NOT NULL
);

INSERT INTO inventory_serial (id, serial) VALUES (1, 0);

CREATE TRIGGER machines_added AFTER INSERT ON machines
BEGIN
    UPDATE inventory_serial SET serial = serial + 1 WHERE id = 1;
END;

CREATE TRIGGER machines_removed AFTER DELETE ON machines
BEGIN
    UPDATE inventory_serial SET serial = serial + 1 WHERE id = 1;
END;

CREATE TRIGGER machines_changed AFTER UPDATE OF key, name, facts ON machines
BEGIN
    UPDATE inventory_serial SET serial = serial + 1 WHERE id = 1;
END;
