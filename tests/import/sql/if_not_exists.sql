-- Written by a migration tool that guards every create: one table is new, one already exists.
CREATE TABLE IF NOT EXISTS public.audit (id bigint PRIMARY KEY, note text);
CREATE TABLE IF NOT EXISTS public.events (id bigint PRIMARY KEY, at timestamptz);
