CREATE TABLE IF NOT EXISTS diesel_emitter_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL,
    origin TEXT NOT NULL,
    seq BIGINT NOT NULL,
    table_name TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until TIMESTAMPTZ,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS diesel_emitter_outbox_dead_letter (
    id BIGINT PRIMARY KEY,
    event_id UUID NOT NULL,
    origin TEXT NOT NULL,
    seq BIGINT NOT NULL,
    table_name TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
