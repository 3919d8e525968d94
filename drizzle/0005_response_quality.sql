CREATE TABLE "llm_responses" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"response_id" text NOT NULL,
	"model_id" text NOT NULL,
	"query" text NOT NULL,
	"response" text NOT NULL,
	"responded_at" timestamp with time zone DEFAULT now() NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "llm_responses_response_id_unique" UNIQUE("response_id")
);
--> statement-breakpoint
CREATE TABLE "response_feedback" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"response_ref" bigint NOT NULL,
	"type" text NOT NULL,
	"thumbs_up" boolean,
	"stars" smallint,
	"categories" text[] DEFAULT '{}'::text[] NOT NULL,
	"comment" text,
	"correction" text,
	"negative" boolean NOT NULL,
	"idempotency_key" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "response_feedback_idempotency_key_unique" UNIQUE("idempotency_key")
);
--> statement-breakpoint
ALTER TABLE "response_feedback" ADD CONSTRAINT "response_feedback_response_ref_llm_responses_id_fk" FOREIGN KEY ("response_ref") REFERENCES "public"."llm_responses"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "llm_responses_model_time_idx" ON "llm_responses" USING btree ("model_id","responded_at");--> statement-breakpoint
CREATE INDEX "response_feedback_response_idx" ON "response_feedback" USING btree ("response_ref");--> statement-breakpoint
CREATE INDEX "response_feedback_created_idx" ON "response_feedback" USING btree ("created_at");