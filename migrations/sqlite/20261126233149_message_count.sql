-- Disable the enforcement of foreign-keys constraints
PRAGMA foreign_keys = off;
-- Create "new_conversations" table
CREATE TABLE `new_conversations` (`id` text NOT NULL, `kind` text NOT NULL, `title` text NULL, `direct_key` text NULL, `last_seq` integer NOT NULL DEFAULT (0), `message_count` integer NOT NULL DEFAULT (0), `last_message_id` text NULL, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, PRIMARY KEY (`id`));
-- Copy rows from old table "conversations" to new temporary table "new_conversations"
INSERT INTO `new_conversations` (`id`, `kind`, `title`, `direct_key`, `last_seq`, `last_message_id`, `created_at`, `updated_at`) SELECT `id`, `kind`, `title`, `direct_key`, `last_seq`, `last_message_id`, `created_at`, `updated_at` FROM `conversations`;
-- Drop "conversations" table after copying rows
DROP TABLE `conversations`;
-- Rename temporary table "new_conversations" to "conversations"
ALTER TABLE `new_conversations` RENAME TO `conversations`;
-- Create index "conversation_direct_key" to table: "conversations"
CREATE UNIQUE INDEX `conversation_direct_key` ON `conversations` (`direct_key`);
-- Create index "conversation_updated_at_id" to table: "conversations"
CREATE INDEX `conversation_updated_at_id` ON `conversations` (`updated_at`, `id`);
-- Enable back the enforcement of foreign-keys constraints
PRAGMA foreign_keys = on;
-- Backfill: every message ever created counts, tombstones included
UPDATE `conversations` SET `message_count` = (SELECT COUNT(*) FROM `messages` WHERE `messages`.`conversation_id` = `conversations`.`id`);
