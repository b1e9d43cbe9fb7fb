DROP TABLE IF EXISTS diesel_emitter_outbox_dead_letter;
DROP TABLE IF EXISTS diesel_emitter_outbox;
