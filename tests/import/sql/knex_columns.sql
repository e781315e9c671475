-- One column added then altered, another altered twice, as query builders write them.
ALTER TABLE public.users ADD COLUMN age integer DEFAULT 0 NOT NULL;
ALTER TABLE public.users ALTER COLUMN age TYPE bigint;
ALTER TABLE public.users ALTER COLUMN age SET DEFAULT 18;
ALTER TABLE public.users ALTER COLUMN name SET DEFAULT 'anon';
ALTER TABLE public.users ALTER COLUMN name DROP NOT NULL;
