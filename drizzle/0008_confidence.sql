CREATE TYPE "public"."validation_method" AS ENUM('human_review', 'automated_test', 'cross_validation');--> statement-breakpoint
CREATE TABLE "tenant_api_keys" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"key_hash" text NOT NULL,
	"prefix" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "tenant_api_keys_key_hash_unique" UNIQUE("key_hash")
);
--> statement-breakpoint
CREATE TABLE "tenants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tenants_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "confidence_calibration" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"request_id" text NOT NULL,
	"model" text NOT NULL,
	"predicted_confidence" numeric(5, 4) NOT NULL,
	"actual_outcome" boolean NOT NULL,
	"validation_method" "validation_method" NOT NULL,
	"calibration_error" numeric(5, 4) GENERATED ALWAYS AS (abs(predicted_confidence - CASE WHEN actual_outcome THEN 1 ELSE 0 END)) STORED NOT NULL,
	"validated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "confidence_daily" (
	"tenant_id" uuid NOT NULL,
	"model" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"sum_overall" double precision NOT NULL,
	"sum_sq_overall" double precision NOT NULL,
	"min_overall" double precision NOT NULL,
	"max_overall" double precision NOT NULL,
	"sum_factual" double precision NOT NULL,
	"sum_reasoning" double precision NOT NULL,
	"sum_contextual" double precision NOT NULL,
	"sum_uncertainty_width" double precision NOT NULL,
	CONSTRAINT "confidence_daily_tenant_id_bucket_model_pk" PRIMARY KEY("tenant_id","bucket","model")
);
--> statement-breakpoint
CREATE TABLE "confidence_hourly" (
	"tenant_id" uuid NOT NULL,
	"model" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"sum_overall" double precision NOT NULL,
	"sum_sq_overall" double precision NOT NULL,
	"min_overall" double precision NOT NULL,
	"max_overall" double precision NOT NULL,
	"sum_factual" double precision NOT NULL,
	"sum_reasoning" double precision NOT NULL,
	"sum_contextual" double precision NOT NULL,
	"sum_uncertainty_width" double precision NOT NULL,
	CONSTRAINT "confidence_hourly_tenant_id_bucket_model_pk" PRIMARY KEY("tenant_id","bucket","model")
);
--> statement-breakpoint
CREATE TABLE "confidence_hourly_pending" (
	"tenant_id" uuid NOT NULL,
	"model" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"sum_overall" double precision NOT NULL,
	"sum_sq_overall" double precision NOT NULL,
	"min_overall" double precision NOT NULL,
	"max_overall" double precision NOT NULL,
	"sum_factual" double precision NOT NULL,
	"sum_reasoning" double precision NOT NULL,
	"sum_contextual" double precision NOT NULL,
	"sum_uncertainty_width" double precision NOT NULL,
	CONSTRAINT "confidence_hourly_pending_model_named" CHECK (model <> '')
);
--> statement-breakpoint
CREATE TABLE "confidence_scores" (
	"tenant_id" uuid NOT NULL,
	"request_id" text NOT NULL,
	"model" text NOT NULL,
	"factual_confidence" numeric(5, 4) NOT NULL,
	"reasoning_confidence" numeric(5, 4) NOT NULL,
	"contextual_relevance" numeric(5, 4) NOT NULL,
	"uncertainty_lower" numeric(5, 4) NOT NULL,
	"uncertainty_upper" numeric(5, 4) NOT NULL,
	"overall_confidence" numeric(5, 4) GENERATED ALWAYS AS ((factual_confidence + reasoning_confidence + contextual_relevance) / 3.0) STORED NOT NULL,
	"model_consensus" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "confidence_scores_pkey" PRIMARY KEY("tenant_id","request_id"),
	CONSTRAINT "confidence_scores_factual_range" CHECK (factual_confidence >= 0 AND factual_confidence <= 1),
	CONSTRAINT "confidence_scores_reasoning_range" CHECK (reasoning_confidence >= 0 AND reasoning_confidence <= 1),
	CONSTRAINT "confidence_scores_contextual_range" CHECK (contextual_relevance >= 0 AND contextual_relevance <= 1),
	CONSTRAINT "confidence_scores_lower_range" CHECK (uncertainty_lower >= 0 AND uncertainty_lower <= 1),
	CONSTRAINT "confidence_scores_upper_range" CHECK (uncertainty_upper >= 0 AND uncertainty_upper <= 1),
	CONSTRAINT "confidence_scores_bounds_order" CHECK (uncertainty_lower <= uncertainty_upper),
	CONSTRAINT "confidence_scores_model_named" CHECK (model <> '')
);
--> statement-breakpoint
CREATE TABLE "confidence_temperature_fits" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"model" text NOT NULL,
	"temperature" double precision NOT NULL,
	"outcomes" integer NOT NULL,
	"ece_before" double precision NOT NULL,
	"ece_after" double precision NOT NULL,
	"brier_before" double precision NOT NULL,
	"brier_after" double precision NOT NULL,
	"log_loss_before" double precision NOT NULL,
	"log_loss_after" double precision NOT NULL,
	"bins" integer NOT NULL,
	"job_key" text NOT NULL,
	"fitted_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "performance_metrics" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"endpoint" text NOT NULL,
	"request_id" text,
	"model" text,
	"response_time_ms" double precision NOT NULL,
	"tokens_used" integer,
	"system_load" double precision,
	"memory_usage_mb" double precision,
	"cpu_usage_percent" double precision,
	"cache_hit_rate" double precision,
	"confidence_accuracy" double precision,
	"hallucination_rate" double precision,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "performance_metrics_response_time" CHECK (response_time_ms >= 0),
	CONSTRAINT "performance_metrics_tokens" CHECK (tokens_used >= 0),
	CONSTRAINT "performance_metrics_load" CHECK (system_load >= 0),
	CONSTRAINT "performance_metrics_memory" CHECK (memory_usage_mb >= 0),
	CONSTRAINT "performance_metrics_cpu" CHECK (cpu_usage_percent >= 0 AND cpu_usage_percent <= 100),
	CONSTRAINT "performance_metrics_cache" CHECK (cache_hit_rate >= 0 AND cache_hit_rate <= 1),
	CONSTRAINT "performance_metrics_accuracy" CHECK (confidence_accuracy >= 0 AND confidence_accuracy <= 1),
	CONSTRAINT "performance_metrics_hallucination" CHECK (hallucination_rate >= 0 AND hallucination_rate <= 1)
);
--> statement-breakpoint
ALTER TABLE "tenant_api_keys" ADD CONSTRAINT "tenant_api_keys_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "confidence_calibration" ADD CONSTRAINT "confidence_calibration_tenant_id_request_id_confidence_scores_tenant_id_request_id_fk" FOREIGN KEY ("tenant_id","request_id") REFERENCES "public"."confidence_scores"("tenant_id","request_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "confidence_temperature_fits" ADD CONSTRAINT "confidence_temperature_fits_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "tenant_api_keys_tenant_idx" ON "tenant_api_keys" USING btree ("tenant_id");--> statement-breakpoint
CREATE UNIQUE INDEX "confidence_calibration_request_idx" ON "confidence_calibration" USING btree ("tenant_id","request_id","validation_method");--> statement-breakpoint
CREATE INDEX "confidence_calibration_model_idx" ON "confidence_calibration" USING btree ("tenant_id","model","predicted_confidence","actual_outcome");--> statement-breakpoint
CREATE INDEX "confidence_calibration_time_idx" ON "confidence_calibration" USING btree ("tenant_id","validated_at");--> statement-breakpoint
CREATE INDEX "confidence_daily_model_idx" ON "confidence_daily" USING btree ("tenant_id","model","bucket");--> statement-breakpoint
CREATE INDEX "confidence_hourly_model_idx" ON "confidence_hourly" USING btree ("tenant_id","model","bucket");--> statement-breakpoint
CREATE INDEX "confidence_hourly_pending_idx" ON "confidence_hourly_pending" USING btree ("tenant_id","bucket");--> statement-breakpoint
CREATE UNIQUE INDEX "confidence_temperature_fits_run_idx" ON "confidence_temperature_fits" USING btree ("tenant_id","model","job_key");--> statement-breakpoint
CREATE INDEX "confidence_temperature_fits_model_idx" ON "confidence_temperature_fits" USING btree ("tenant_id","model","id");--> statement-breakpoint
CREATE INDEX "performance_metrics_time_idx" ON "performance_metrics" USING btree ("tenant_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "performance_metrics_request_idx" ON "performance_metrics" USING btree ("tenant_id","endpoint","request_id") WHERE request_id IS NOT NULL;--> statement-breakpoint
-- Row-level security: every confidence table is walled off per tenant by Postgres itself. A
-- request's transaction sets app.tenant_id (set_config(..., true)); without it a query sees and
-- writes nothing. FORCE applies the policies to the tables' owner too; only superusers and
-- BYPASSRLS roles pass them, and Caliber's connections take the caliber_app role, which is neither.
CREATE FUNCTION caliber_current_tenant() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;--> statement-breakpoint
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['confidence_scores', 'confidence_hourly', 'confidence_daily', 'confidence_hourly_pending', 'confidence_calibration', 'performance_metrics', 'confidence_temperature_fits'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = caliber_current_tenant()) WITH CHECK (tenant_id = caliber_current_tenant())', t);
    -- TRUNCATE does not pass through row-level security: the app role may not empty every tenant's rows.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'caliber_app') THEN
      EXECUTE format('REVOKE TRUNCATE ON %I FROM caliber_app', t);
    END IF;
  END LOOP;
END $$;--> statement-breakpoint
-- Folds update rollup rows in place: room on each page keeps those updates HOT (no index write)
-- and a tenant's hours together on their pages instead of scattered over the table.
ALTER TABLE confidence_hourly SET (fillfactor = 70);--> statement-breakpoint
ALTER TABLE confidence_daily SET (fillfactor = 70);--> statement-breakpoint
-- The seed's three analytical views. security_invoker (Postgres 15+) makes them read the tables
-- with the caller's rights, so the tenant policies apply through them too.
CREATE VIEW confidence_trends_hourly WITH (security_invoker = true) AS
SELECT tenant_id, model, bucket, sum(count) AS count,
       sum(sum_overall) / sum(count) AS avg_overall,
       sum(sum_factual) / sum(count) AS avg_factual,
       sum(sum_reasoning) / sum(count) AS avg_reasoning,
       sum(sum_contextual) / sum(count) AS avg_contextual,
       min(min_overall) AS min_overall, max(max_overall) AS max_overall,
       sqrt(greatest(sum(sum_sq_overall) / sum(count) - (sum(sum_overall) / sum(count)) ^ 2, 0)) AS stddev_overall,
       sum(sum_uncertainty_width) / sum(count) AS avg_uncertainty_width
  -- model '' rows are the folded all-models totals, which readers of this view sum themselves.
  FROM (SELECT * FROM confidence_hourly WHERE model <> '' UNION ALL SELECT * FROM confidence_hourly_pending) r
 GROUP BY tenant_id, model, bucket;--> statement-breakpoint
CREATE VIEW performance_dashboard WITH (security_invoker = true) AS
SELECT tenant_id, endpoint, date_bin('1 hour', created_at, '2000-01-01 00:00:00+00') AS bucket,
       count(*) AS requests,
       avg(response_time_ms) AS avg_response_time_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms) AS p95_response_time_ms,
       sum(tokens_used) AS total_tokens,
       avg(system_load) AS avg_system_load,
       avg(memory_usage_mb) AS avg_memory_usage_mb,
       avg(cpu_usage_percent) AS avg_cpu_usage_percent,
       avg(cache_hit_rate) AS avg_cache_hit_rate,
       avg(confidence_accuracy) AS avg_confidence_accuracy,
       avg(hallucination_rate) AS avg_hallucination_rate
  FROM performance_metrics
 GROUP BY tenant_id, endpoint, 3;--> statement-breakpoint
CREATE VIEW calibration_analysis WITH (security_invoker = true) AS
SELECT tenant_id, model, validation_method,
       count(*) AS outcomes,
       avg(actual_outcome::int) AS accuracy,
       avg(predicted_confidence) AS avg_confidence,
       avg(predicted_confidence) - avg(actual_outcome::int) AS overconfidence,
       avg(calibration_error) AS mean_absolute_error,
       avg((predicted_confidence - actual_outcome::int) ^ 2) AS brier,
       min(validated_at) AS first_validated_at,
       max(validated_at) AS last_validated_at
  FROM confidence_calibration
 GROUP BY tenant_id, model, validation_method;
