/* Flyway versioned migration */
ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new';
ALTER TABLE orders DROP COLUMN legacy_code;
ALTER TABLE orders ADD CONSTRAINT orders_ref_unique UNIQUE (ref);
ALTER TABLE orders RENAME CONSTRAINT orders_total_check TO orders_total_positive;
ALTER TABLE orders SET UNLOGGED;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
