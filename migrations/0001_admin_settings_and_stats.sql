CREATE TABLE `clients` (
	`agent` text PRIMARY KEY NOT NULL,
	`first_seen` integer NOT NULL,
	`last_seen` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `clients_last_seen` ON `clients` (`last_seen`);--> statement-breakpoint
CREATE TABLE `counters` (
	`name` text PRIMARY KEY NOT NULL,
	`value` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `daily_agents` (
	`day` text NOT NULL,
	`kind` text NOT NULL,
	`agent` text NOT NULL,
	PRIMARY KEY(`day`, `kind`, `agent`)
);
--> statement-breakpoint
CREATE TABLE `daily_stats` (
	`day` text NOT NULL,
	`kind` text NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	`bytes_served` integer DEFAULT 0 NOT NULL,
	`bytes_upstream` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`day`, `kind`)
);
--> statement-breakpoint
CREATE TABLE `settings` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL,
	`updated_at` integer NOT NULL
);
