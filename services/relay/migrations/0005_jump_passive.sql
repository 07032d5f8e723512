-- Passive jump clients and uninstalling (issue 8): the address a client last connected from
-- (a wake-up goes there, to its `wake_port`), and when it answered an uninstall order.
ALTER TABLE jump_clients ADD COLUMN last_address TEXT;
ALTER TABLE jump_clients ADD COLUMN uninstalled_at INTEGER;
