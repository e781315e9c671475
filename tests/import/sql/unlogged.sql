-- A staging table made unlogged for a bulk load, and one made logged again.
ALTER TABLE public.staging SET UNLOGGED;
ALTER TABLE public.loaded SET LOGGED;
