SET statement_timeout = 0;
SET lock_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE TABLE public.comments (
    id bigint NOT NULL,
    post_id bigint NOT NULL,
    body text,
    CONSTRAINT comments_pkey PRIMARY KEY (id)
);

ALTER TABLE ONLY public.posts RENAME COLUMN headline TO title;

ALTER TABLE ONLY public.comments
    ADD CONSTRAINT fk_rails_2fd19c0db7 FOREIGN KEY (post_id) REFERENCES public.posts(id);

CREATE INDEX index_comments_on_post_id ON public.comments USING btree (post_id);

INSERT INTO "schema_migrations" (version) VALUES
('20261201120000');
