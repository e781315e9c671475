ALTER TABLE cutover.backfill ADD COLUMN chunk_retries bigint NOT NULL DEFAULT 0;
