CREATE TABLE "error_analysis_runs" (
	"id" serial PRIMARY KEY NOT NULL,
	"job_id" text NOT NULL,
	"as_of" timestamp with time zone NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"summary" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "error_analysis_runs_job_id_unique" UNIQUE("job_id")
);
--> statement-breakpoint
CREATE TABLE "error_patterns" (
	"run_id" integer NOT NULL,
	"model_id" text NOT NULL,
	"category" text NOT NULL,
	"count" integer NOT NULL,
	"share" double precision NOT NULL,
	"examples" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "error_trends" (
	"run_id" integer NOT NULL,
	"model_id" text NOT NULL,
	"category" text NOT NULL,
	"week" text NOT NULL,
	"count" integer NOT NULL,
	"change" integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE "improvement_suggestions" (
	"run_id" integer NOT NULL,
	"model_id" text NOT NULL,
	"category" text NOT NULL,
	"share" double precision NOT NULL,
	"previous_share" double precision NOT NULL,
	"count" integer NOT NULL,
	"evidence" text NOT NULL,
	"action" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "response_feedback" ADD COLUMN "comment_categories" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "error_patterns" ADD CONSTRAINT "error_patterns_run_id_error_analysis_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."error_analysis_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "error_trends" ADD CONSTRAINT "error_trends_run_id_error_analysis_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."error_analysis_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "improvement_suggestions" ADD CONSTRAINT "improvement_suggestions_run_id_error_analysis_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."error_analysis_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "error_patterns_run_model_idx" ON "error_patterns" USING btree ("run_id","model_id");--> statement-breakpoint
CREATE INDEX "error_trends_run_model_idx" ON "error_trends" USING btree ("run_id","model_id");--> statement-breakpoint
CREATE INDEX "improvement_suggestions_run_model_idx" ON "improvement_suggestions" USING btree ("run_id","model_id");