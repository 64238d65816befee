-- How far the local decision spool of a SQLite store is committed (see spool.rs), and a count
-- of committed changes that decide what access decisions read, by which in-memory views notice
-- changes made by another process.
INSERT INTO counters (name, value) VALUES ('decision_spool', 0);
INSERT INTO counters (name, value) VALUES ('changes', 0);
