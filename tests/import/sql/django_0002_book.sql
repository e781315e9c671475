BEGIN;
--
-- Add field pages to book
--
ALTER TABLE "library_book" ADD COLUMN "pages" integer DEFAULT 0 NOT NULL;
ALTER TABLE "library_book" ALTER COLUMN "pages" DROP DEFAULT;
--
-- Add field author to book
--
ALTER TABLE "library_book" ADD COLUMN "author_id" bigint NULL;
ALTER TABLE "library_book" ADD CONSTRAINT "library_book_author_id_2d7c5a1e_fk_library_author_id" FOREIGN KEY ("author_id") REFERENCES "library_author" ("id") DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX "library_book_author_id_2d7c5a1e" ON "library_book" ("author_id");
--
-- Alter field title on book
--
ALTER TABLE "library_book" ALTER COLUMN "title" TYPE varchar(300);
COMMIT;
