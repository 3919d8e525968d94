CREATE TABLE "calibration_triggers" (
	"name" text PRIMARY KEY NOT NULL,
	"value" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "calibration_versions" ADD COLUMN "retag_requested_at" timestamp with time zone;