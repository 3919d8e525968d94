CREATE TABLE "aa_performance_metrics" (
	"slug" text PRIMARY KEY NOT NULL,
	"aa_id" text NOT NULL,
	"name" text NOT NULL,
	"creator" text,
	"intelligence_index" double precision,
	"coding_index" double precision,
	"math_index" double precision,
	"pricing" jsonb,
	"evaluations" jsonb,
	"output_tokens_per_second" double precision,
	"time_to_first_token_seconds" double precision,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "aa_performance_metrics_aa_id_unique" UNIQUE("aa_id")
);
--> statement-breakpoint
CREATE TABLE "model_aa_mapping" (
	"model_name" text PRIMARY KEY NOT NULL,
	"aa_slug" text,
	"method" text,
	"score" double precision,
	"manual" boolean DEFAULT false NOT NULL,
	"reason" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "model_mapping_runs" (
	"id" serial PRIMARY KEY NOT NULL,
	"job_id" text NOT NULL,
	"source" text NOT NULL,
	"aa_entries" integer NOT NULL,
	"total_models" integer NOT NULL,
	"mapped" integer NOT NULL,
	"unmapped" integer NOT NULL,
	"manual" integer NOT NULL,
	"duplicates_skipped" integer NOT NULL,
	"coverage" double precision NOT NULL,
	"result" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_mapping_runs_job_id_unique" UNIQUE("job_id")
);
--> statement-breakpoint
CREATE TABLE "working_version" (
	"id" serial PRIMARY KEY NOT NULL,
	"inference_provider" text NOT NULL,
	"model_id" text NOT NULL,
	"human_readable_name" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "model_aa_mapping" ADD CONSTRAINT "model_aa_mapping_aa_slug_aa_performance_metrics_slug_fk" FOREIGN KEY ("aa_slug") REFERENCES "public"."aa_performance_metrics"("slug") ON DELETE set null ON UPDATE cascade;--> statement-breakpoint
CREATE INDEX "model_aa_mapping_aa_slug_idx" ON "model_aa_mapping" USING btree ("aa_slug") WHERE "model_aa_mapping"."aa_slug" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "working_version_model_id_idx" ON "working_version" USING btree ("model_id");--> statement-breakpoint
CREATE INDEX "working_version_provider_idx" ON "working_version" USING btree ("inference_provider");