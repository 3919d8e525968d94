CREATE TABLE "credit_accounts" (
	"id" text PRIMARY KEY NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "credit_ledger" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"kind" text NOT NULL,
	"amount" integer NOT NULL,
	"job_id" uuid,
	"note" text,
	"idempotency_key" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "credit_ledger_idempotency_key_unique" UNIQUE("idempotency_key"),
	CONSTRAINT "credit_ledger_shape" CHECK (("credit_ledger"."kind" = 'grant' AND "credit_ledger"."amount" > 0 AND "credit_ledger"."job_id" IS NULL)
       OR ("credit_ledger"."kind" = 'reserve' AND "credit_ledger"."amount" <= 0 AND "credit_ledger"."job_id" IS NOT NULL)
       OR ("credit_ledger"."kind" = 'settle' AND "credit_ledger"."amount" = 0 AND "credit_ledger"."job_id" IS NOT NULL)
       OR ("credit_ledger"."kind" = 'refund' AND "credit_ledger"."amount" >= 0 AND "credit_ledger"."job_id" IS NOT NULL))
);
--> statement-breakpoint
CREATE TABLE "fine_tuning_job_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"job_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"message" text NOT NULL,
	"provider_event_id" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "fine_tuning_jobs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"model_id" text NOT NULL,
	"account_id" text NOT NULL,
	"provider" text NOT NULL,
	"base_model" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"trigger" text DEFAULT 'api' NOT NULL,
	"analysis_run_id" integer,
	"provider_job_id" text,
	"provider_training_file_id" text,
	"provider_validation_file_id" text,
	"fine_tuned_model" text,
	"dataset_path" text,
	"dataset_rows" integer,
	"validation_rows" integer,
	"dataset_bytes" bigint,
	"dataset_sha256" text,
	"credits_reserved" integer DEFAULT 0 NOT NULL,
	"error" text,
	"queue_job_id" text,
	"cancel_requested_at" timestamp with time zone,
	"cancel_sent_at" timestamp with time zone,
	"output_offset" bigint DEFAULT 0 NOT NULL,
	"output_lines" integer DEFAULT 0 NOT NULL,
	"poll_failures" integer DEFAULT 0 NOT NULL,
	"runs" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"prepared_at" timestamp with time zone,
	"submitted_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "llm_responses" ADD COLUMN "query_key" text GENERATED ALWAYS AS (md5(btrim(regexp_replace(query, '\s+', ' ', 'g')))) STORED NOT NULL;--> statement-breakpoint
ALTER TABLE "response_feedback" ADD COLUMN "correction_key" text GENERATED ALWAYS AS (md5(btrim(regexp_replace(correction, '\s+', ' ', 'g')))) STORED;--> statement-breakpoint
ALTER TABLE "credit_ledger" ADD CONSTRAINT "credit_ledger_account_id_credit_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."credit_accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credit_ledger" ADD CONSTRAINT "credit_ledger_job_id_fine_tuning_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."fine_tuning_jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "fine_tuning_job_events" ADD CONSTRAINT "fine_tuning_job_events_job_id_fine_tuning_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."fine_tuning_jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "fine_tuning_jobs" ADD CONSTRAINT "fine_tuning_jobs_account_id_credit_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."credit_accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "fine_tuning_jobs" ADD CONSTRAINT "fine_tuning_jobs_analysis_run_id_error_analysis_runs_id_fk" FOREIGN KEY ("analysis_run_id") REFERENCES "public"."error_analysis_runs"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "credit_ledger_account_idx" ON "credit_ledger" USING btree ("account_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "credit_ledger_job_kind_idx" ON "credit_ledger" USING btree ("job_id","kind") WHERE "credit_ledger"."job_id" IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "credit_ledger_job_outcome_idx" ON "credit_ledger" USING btree ("job_id") WHERE "credit_ledger"."kind" IN ('settle', 'refund');--> statement-breakpoint
CREATE INDEX "fine_tuning_job_events_job_idx" ON "fine_tuning_job_events" USING btree ("job_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "fine_tuning_job_events_provider_idx" ON "fine_tuning_job_events" USING btree ("job_id","provider_event_id") WHERE "fine_tuning_job_events"."provider_event_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "fine_tuning_jobs_created_idx" ON "fine_tuning_jobs" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "fine_tuning_jobs_model_idx" ON "fine_tuning_jobs" USING btree ("model_id","created_at");--> statement-breakpoint
CREATE INDEX "fine_tuning_jobs_account_idx" ON "fine_tuning_jobs" USING btree ("account_id","created_at");--> statement-breakpoint
CREATE INDEX "fine_tuning_jobs_active_idx" ON "fine_tuning_jobs" USING btree ("status") WHERE "fine_tuning_jobs"."status" NOT IN ('succeeded', 'failed', 'cancelled');--> statement-breakpoint
CREATE UNIQUE INDEX "fine_tuning_jobs_run_model_idx" ON "fine_tuning_jobs" USING btree ("analysis_run_id","model_id") WHERE "fine_tuning_jobs"."analysis_run_id" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "response_feedback_corrections_idx" ON "response_feedback" USING btree ("response_ref") WHERE "response_feedback"."correction" IS NOT NULL;--> statement-breakpoint
-- The credit ledger is append-only: balances are its sum, so an entry is never changed or removed.
CREATE FUNCTION credit_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'credit_ledger is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;--> statement-breakpoint
CREATE TRIGGER credit_ledger_append_only BEFORE UPDATE OR DELETE ON credit_ledger
  FOR EACH ROW EXECUTE FUNCTION credit_ledger_append_only();--> statement-breakpoint
CREATE TRIGGER credit_ledger_no_truncate BEFORE TRUNCATE ON credit_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION credit_ledger_append_only();--> statement-breakpoint
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'caliber_app') THEN
    REVOKE UPDATE, DELETE, TRUNCATE ON credit_ledger FROM caliber_app;
  END IF;
END $$;
