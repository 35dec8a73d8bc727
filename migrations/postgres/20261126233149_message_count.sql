-- Modify "conversations" table
ALTER TABLE "conversations" ADD COLUMN "message_count" bigint NOT NULL DEFAULT 0;
-- Backfill: every message ever created counts, tombstones included
UPDATE "conversations" SET "message_count" = (SELECT COUNT(*) FROM "messages" WHERE "messages"."conversation_id" = "conversations"."id");
