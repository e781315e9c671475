-- Objects an ORM creates beside its tables: each is dropped by the rollback.
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN');
CREATE SEQUENCE public.ticket_seq START WITH 100;
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.seen = now(); RETURN NEW; END $$;
CREATE TRIGGER users_touch BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.touch();
CREATE VIEW public.active_users AS SELECT id FROM public.users WHERE seen IS NOT NULL;
ALTER TABLE public.users ADD COLUMN role "Role" NOT NULL DEFAULT 'USER';
