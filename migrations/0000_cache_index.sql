CREATE TABLE `blobs` (
	`sha256` text PRIMARY KEY NOT NULL,
	`size` integer NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `entries` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`url` text NOT NULL,
	`variant` text DEFAULT '' NOT NULL,
	`vary` text,
	`sha256` text NOT NULL,
	`status` integer NOT NULL,
	`headers` text NOT NULL,
	`request_time` integer NOT NULL,
	`response_time` integer NOT NULL,
	`last_access` integer NOT NULL,
	`hits` integer DEFAULT 0 NOT NULL,
	FOREIGN KEY (`sha256`) REFERENCES `blobs`(`sha256`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `entries_url_variant` ON `entries` (`url`,`variant`);--> statement-breakpoint
CREATE INDEX `entries_last_access` ON `entries` (`last_access`);--> statement-breakpoint
CREATE INDEX `entries_sha256` ON `entries` (`sha256`);