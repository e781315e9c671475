BEGIN;

-- Running upgrade 1a2b -> 3f2a

ALTER TABLE accounts ADD COLUMN balance_cents BIGINT;

ALTER TABLE accounts ALTER COLUMN balance TYPE BIGINT USING (balance * 100)::bigint;

CREATE UNIQUE INDEX ix_accounts_email ON accounts (email);

ALTER TABLE accounts ADD CONSTRAINT ck_accounts_balance CHECK (balance_cents >= 0);

UPDATE alembic_version SET version_num='3f2a' WHERE alembic_version.version_num = '1a2b';

COMMIT;
