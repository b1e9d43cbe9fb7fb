CREATE TABLE IF NOT EXISTS diesel_emitter_outbox (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id CHAR(36) NOT NULL,
    origin VARCHAR(255) NOT NULL,
    seq BIGINT NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    action VARCHAR(16) NOT NULL,
    payload LONGTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until DATETIME(6) NULL,
    last_error TEXT NULL
) ENGINE = InnoDB;
CREATE TABLE IF NOT EXISTS diesel_emitter_outbox_dead_letter (
    id BIGINT NOT NULL PRIMARY KEY,
    event_id CHAR(36) NOT NULL,
    origin VARCHAR(255) NOT NULL,
    seq BIGINT NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    action VARCHAR(16) NOT NULL,
    payload LONGTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    failed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;
