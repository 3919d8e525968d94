CREATE TABLE "calibration_results" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"language" text NOT NULL,
	"size_category" text NOT NULL,
	"model_id" text NOT NULL,
	"provider" text NOT NULL,
	"repository" text DEFAULT '' NOT NULL,
	"quality_score" double precision NOT NULL,
	"latency_ms" double precision NOT NULL,
	"cost_usd" double precision NOT NULL,
	"tested_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "calibration_results_size_check" CHECK (size_category IN ('small', 'medium', 'large')),
	CONSTRAINT "calibration_results_quality_range" CHECK (quality_score >= 0 AND quality_score <= 1),
	CONSTRAINT "calibration_results_latency_range" CHECK (latency_ms >= 0 AND latency_ms <= 86400000),
	CONSTRAINT "calibration_results_cost_range" CHECK (cost_usd >= 0 AND cost_usd <= 1000000)
);
--> statement-breakpoint
CREATE TABLE "model_configurations" (
	"language" text NOT NULL,
	"size_category" text NOT NULL,
	"model_id" text NOT NULL,
	"provider" text NOT NULL,
	"score" double precision NOT NULL,
	"sample_count" integer NOT NULL,
	"quality_score" double precision NOT NULL,
	"latency_ms" double precision NOT NULL,
	"cost_usd" double precision NOT NULL,
	"runner_up_model_id" text,
	"runner_up_provider" text,
	"runner_up_score" double precision,
	"run_id" bigint NOT NULL,
	"stale" boolean DEFAULT false NOT NULL,
	"chosen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_configurations_pkey" PRIMARY KEY("language","size_category"),
	CONSTRAINT "model_configurations_size_check" CHECK (size_category IN ('small', 'medium', 'large', 'any'))
);
--> statement-breakpoint
CREATE TABLE "model_selection_runs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"job_key" text NOT NULL,
	"requested_by" text,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"configurations" integer,
	"changed" integer,
	"result" jsonb,
	CONSTRAINT "model_selection_runs_job_key_unique" UNIQUE("job_key")
);
--> statement-breakpoint
CREATE TABLE "notification_attempts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"notification_id" bigint NOT NULL,
	"round" integer NOT NULL,
	"attempt" integer NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"duration_ms" integer NOT NULL,
	"status_code" integer,
	"outcome" text NOT NULL,
	"error" text,
	"response" text
);
--> statement-breakpoint
CREATE TABLE "notifications" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"event" text NOT NULL,
	"dedupe_key" text NOT NULL,
	"body" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"round" integer DEFAULT 0 NOT NULL,
	"lease_until" timestamp with time zone,
	"lease_token" uuid,
	"last_attempt_at" timestamp with time zone,
	"job_id" text,
	"last_error" text,
	"caused_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone,
	CONSTRAINT "notifications_dedupe_key_unique" UNIQUE("dedupe_key"),
	CONSTRAINT "notifications_status_check" CHECK (status IN ('pending', 'delivered', 'failed', 'skipped'))
);
--> statement-breakpoint
ALTER TABLE "notification_attempts" ADD CONSTRAINT "notification_attempts_notification_id_notifications_id_fk" FOREIGN KEY ("notification_id") REFERENCES "public"."notifications"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "calibration_results_natural_key" ON "calibration_results" USING btree ("run_id","language","size_category","provider","model_id","repository");--> statement-breakpoint
CREATE INDEX "calibration_results_tested_at_idx" ON "calibration_results" USING btree ("tested_at");--> statement-breakpoint
CREATE INDEX "calibration_results_pair_idx" ON "calibration_results" USING btree ("language","size_category","tested_at");--> statement-breakpoint
CREATE INDEX "notification_attempts_notification_idx" ON "notification_attempts" USING btree ("notification_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "notification_attempts_attempt_key" ON "notification_attempts" USING btree ("notification_id","round","attempt");--> statement-breakpoint
CREATE INDEX "notifications_status_idx" ON "notifications" USING btree ("status","id");--> statement-breakpoint
CREATE INDEX "notifications_event_idx" ON "notifications" USING btree ("event","id");