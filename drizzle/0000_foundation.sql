CREATE TABLE "outbox" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"queue" text NOT NULL,
	"job_name" text NOT NULL,
	"payload" jsonb NOT NULL,
	"caused_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"relayed_at" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text
);
--> statement-breakpoint
CREATE TABLE "calibration_references" (
	"model_name" text NOT NULL,
	"head_name" text NOT NULL,
	"version" integer NOT NULL,
	"labels" jsonb NOT NULL,
	"source" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "calibration_references_pkey" PRIMARY KEY("model_name","head_name")
);
--> statement-breakpoint
CREATE TABLE "calibration_runs" (
	"id" serial PRIMARY KEY NOT NULL,
	"model_name" text NOT NULL,
	"head_name" text NOT NULL,
	"version" integer NOT NULL,
	"file_count" integer NOT NULL,
	"timestamp" timestamp with time zone DEFAULT now() NOT NULL,
	"p5" double precision NOT NULL,
	"p95" double precision NOT NULL,
	"range" double precision NOT NULL,
	"reference_version" integer,
	"apd_p5" double precision,
	"apd_p95" double precision,
	"srd" double precision,
	"jsd" double precision,
	"median_drift" double precision,
	"iqr_drift" double precision,
	"is_stable" boolean NOT NULL,
	"details" jsonb NOT NULL,
	CONSTRAINT "calibration_runs_model_head_version_key" UNIQUE("model_name","head_name","version")
);
--> statement-breakpoint
CREATE TABLE "calibration_versions" (
	"version" integer PRIMARY KEY NOT NULL,
	"job_id" text NOT NULL,
	"library_size" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"result" jsonb NOT NULL,
	CONSTRAINT "calibration_versions_job_id_unique" UNIQUE("job_id")
);
--> statement-breakpoint
CREATE TABLE "library_files" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"path" text NOT NULL,
	"tagged_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "library_files_path_unique" UNIQUE("path")
);
--> statement-breakpoint
CREATE TABLE "library_tags" (
	"file_id" bigint NOT NULL,
	"model_name" text NOT NULL,
	"head_name" text NOT NULL,
	"label" text NOT NULL,
	"raw_score" double precision NOT NULL,
	"calibrated_score" double precision,
	"calibration_version" integer,
	CONSTRAINT "library_tags_pkey" PRIMARY KEY("file_id","model_name","head_name","label")
);
--> statement-breakpoint
ALTER TABLE "library_tags" ADD CONSTRAINT "library_tags_file_id_library_files_id_fk" FOREIGN KEY ("file_id") REFERENCES "public"."library_files"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "outbox" USING btree ("id") WHERE "outbox"."relayed_at" is null;--> statement-breakpoint
CREATE INDEX "outbox_caused_by_idx" ON "outbox" USING btree ("caused_by");--> statement-breakpoint
CREATE INDEX "calibration_runs_version_idx" ON "calibration_runs" USING btree ("version" DESC NULLS LAST);