ALTER TABLE cutover.backfill_chunks
    ADD COLUMN blocked      integer NOT NULL DEFAULT 0,
    ADD COLUMN effective_ms integer;
