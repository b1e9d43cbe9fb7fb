CREATE TABLE IF NOT EXISTS diesel_emitter_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    table_name TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS diesel_emitter_outbox_dead_letter (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    table_name TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
