-- Several processes share this index (worker processes, issue 11). Each keeps
-- lookups in memory, so each must learn which URLs another one changed: every
-- change to what a lookup returns is logged here (not hits or last-access times,
-- which only order eviction).
CREATE TABLE `entry_changes` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`url` text NOT NULL
);
--> statement-breakpoint
CREATE TRIGGER `entries_inserted` AFTER INSERT ON `entries` BEGIN
	INSERT INTO `entry_changes` (`url`) VALUES (NEW.`url`);
END;
--> statement-breakpoint
CREATE TRIGGER `entries_updated` AFTER UPDATE OF `url`, `variant`, `vary`, `sha256`, `status`, `headers`, `request_time`, `response_time` ON `entries` BEGIN
	INSERT INTO `entry_changes` (`url`) VALUES (NEW.`url`);
	INSERT INTO `entry_changes` (`url`) SELECT OLD.`url` WHERE OLD.`url` <> NEW.`url`;
END;
--> statement-breakpoint
CREATE TRIGGER `entries_deleted` AFTER DELETE ON `entries` BEGIN
	INSERT INTO `entry_changes` (`url`) VALUES (OLD.`url`);
END;
--> statement-breakpoint
-- The bytes stored, kept by the database itself so every process reads the same total.
CREATE TABLE `blob_total` (
	`id` integer PRIMARY KEY NOT NULL CHECK (`id` = 1),
	`bytes` integer NOT NULL
);
--> statement-breakpoint
INSERT INTO `blob_total` (`id`, `bytes`) SELECT 1, coalesce(sum(`size`), 0) FROM `blobs`;
--> statement-breakpoint
CREATE TRIGGER `blobs_added` AFTER INSERT ON `blobs` BEGIN
	UPDATE `blob_total` SET `bytes` = `bytes` + NEW.`size` WHERE `id` = 1;
END;
--> statement-breakpoint
CREATE TRIGGER `blobs_removed` AFTER DELETE ON `blobs` BEGIN
	UPDATE `blob_total` SET `bytes` = `bytes` - OLD.`size` WHERE `id` = 1;
END;
