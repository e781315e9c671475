-- Ranges planned per leaf partition of a partitioned table: the leaf they cover (NULL for a
-- plain table and for sweeps, which run through the parent), and whether the leaf was detached
-- from the table before the range was finished (then the range is closed and reported).
ALTER TABLE cutover.backfill_ranges
    ADD COLUMN partition      text,
    ADD COLUMN partition_root text,
    ADD COLUMN detached       boolean NOT NULL DEFAULT false;
