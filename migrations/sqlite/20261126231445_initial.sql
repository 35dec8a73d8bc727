-- Create "attachments" table
CREATE TABLE `attachments` (`id` text NOT NULL, `uploader_id` text NOT NULL, `filename` text NOT NULL, `content_type` text NOT NULL, `size` integer NOT NULL, `created_at` datetime NOT NULL, `conversation_id` text NOT NULL, `message_id` text NULL, PRIMARY KEY (`id`), CONSTRAINT `attachments_conversations_attachments` FOREIGN KEY (`conversation_id`) REFERENCES `conversations` (`id`) ON DELETE NO ACTION, CONSTRAINT `attachments_messages_attachments` FOREIGN KEY (`message_id`) REFERENCES `messages` (`id`) ON DELETE SET NULL);
-- Create index "attachment_message_id" to table: "attachments"
CREATE INDEX `attachment_message_id` ON `attachments` (`message_id`);
-- Create index "attachment_conversation_id" to table: "attachments"
CREATE INDEX `attachment_conversation_id` ON `attachments` (`conversation_id`);
-- Create "conversations" table
CREATE TABLE `conversations` (`id` text NOT NULL, `kind` text NOT NULL, `title` text NULL, `direct_key` text NULL, `last_seq` integer NOT NULL DEFAULT (0), `last_message_id` text NULL, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create index "conversation_direct_key" to table: "conversations"
CREATE UNIQUE INDEX `conversation_direct_key` ON `conversations` (`direct_key`);
-- Create index "conversation_updated_at_id" to table: "conversations"
CREATE INDEX `conversation_updated_at_id` ON `conversations` (`updated_at`, `id`);
-- Create "messages" table
CREATE TABLE `messages` (`id` text NOT NULL, `seq` integer NOT NULL, `body` text NOT NULL, `client_message_id` text NULL, `created_at` datetime NOT NULL, `edited_at` datetime NULL, `deleted_at` datetime NULL, `conversation_id` text NOT NULL, `sender_id` text NOT NULL, PRIMARY KEY (`id`), CONSTRAINT `messages_conversations_messages` FOREIGN KEY (`conversation_id`) REFERENCES `conversations` (`id`) ON DELETE NO ACTION, CONSTRAINT `messages_users_messages` FOREIGN KEY (`sender_id`) REFERENCES `users` (`id`) ON DELETE NO ACTION);
-- Create index "message_conversation_id_seq" to table: "messages"
CREATE UNIQUE INDEX `message_conversation_id_seq` ON `messages` (`conversation_id`, `seq`);
-- Create index "message_sender_id_conversation_id_client_message_id" to table: "messages"
CREATE UNIQUE INDEX `message_sender_id_conversation_id_client_message_id` ON `messages` (`sender_id`, `conversation_id`, `client_message_id`);
-- Create "message_events" table
CREATE TABLE `message_events` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `seq` integer NOT NULL, `type` text NOT NULL, `message_id` text NOT NULL, `created_at` datetime NOT NULL, `conversation_id` text NOT NULL, CONSTRAINT `message_events_conversations_events` FOREIGN KEY (`conversation_id`) REFERENCES `conversations` (`id`) ON DELETE NO ACTION);
-- Create index "messageevent_conversation_id_seq" to table: "message_events"
CREATE UNIQUE INDEX `messageevent_conversation_id_seq` ON `message_events` (`conversation_id`, `seq`);
-- Create "participants" table
CREATE TABLE `participants` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `joined_at` datetime NOT NULL, `last_read_seq` integer NOT NULL DEFAULT (0), `last_read_message_id` text NULL, `read_at` datetime NULL, `conversation_id` text NOT NULL, `user_id` text NOT NULL, CONSTRAINT `participants_conversations_participants` FOREIGN KEY (`conversation_id`) REFERENCES `conversations` (`id`) ON DELETE NO ACTION, CONSTRAINT `participants_users_memberships` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`) ON DELETE NO ACTION);
-- Create index "participant_user_id_conversation_id" to table: "participants"
CREATE UNIQUE INDEX `participant_user_id_conversation_id` ON `participants` (`user_id`, `conversation_id`);
-- Create index "participant_conversation_id_user_id" to table: "participants"
CREATE INDEX `participant_conversation_id_user_id` ON `participants` (`conversation_id`, `user_id`);
-- Create "users" table
CREATE TABLE `users` (`id` text NOT NULL, `username` text NOT NULL, `display_name` text NOT NULL, `password_hash` text NOT NULL, `avatar_url` text NULL, `created_at` datetime NOT NULL, PRIMARY KEY (`id`));
-- Create index "user_username" to table: "users"
CREATE UNIQUE INDEX `user_username` ON `users` (`username`);
