-- Per URL, the bytes agents got from the cache (the status page's top objects; src/stats/object-savings.ts).
CREATE TABLE `object_savings` (
	`url` text PRIMARY KEY NOT NULL,
	`responses` integer DEFAULT 0 NOT NULL,
	`bytes_saved` integer DEFAULT 0 NOT NULL,
	`last_served` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `object_savings_bytes_saved` ON `object_savings` (`bytes_saved`);