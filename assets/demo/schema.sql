-- Cutover demo schema: a small bank-like app with accounts, customers and orders.
-- Idempotent: safe to run on a database that already has it.
-- Seed with: SELECT cutover_demo_seed(accounts => 1000000, customers => 50000, orders => 200000);

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

CREATE TABLE IF NOT EXISTS accounts (
    id         bigserial PRIMARY KEY,
    owner      text NOT NULL,
    balance    numeric(14,2) NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS customers (
    id         bigserial PRIMARY KEY,
    full_name  text,
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL,
    total       numeric(12,2) NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION cutover_demo_seed(accounts integer, customers integer, orders integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.accounts (owner, balance, created_at)
    SELECT 'owner-' || g,
           round((random() * 100000)::numeric, 2),
           timestamptz '2025-01-01' + (g % 365) * interval '1 day'
      FROM generate_series(1, accounts) g;
    INSERT INTO public.customers (full_name, email, created_at)
    SELECT CASE WHEN g % 50 = 0 THEN NULL ELSE 'Customer ' || g END,
           'c' || g || '@example.com',
           timestamptz '2025-01-01' + (g % 365) * interval '1 day'
      FROM generate_series(1, customers) g;
    INSERT INTO public.orders (customer_id, total, status, created_at)
    SELECT 1 + (g % greatest(customers, 1)),
           round((random() * 500)::numeric, 2),
           (ARRAY['new','paid','shipped','returned'])[1 + g % 4],
           timestamptz '2025-01-01' + (g % 600) * interval '1 day'
      FROM generate_series(1, orders) g;
    ANALYZE public.accounts;
    ANALYZE public.customers;
    ANALYZE public.orders;
END
$$;
