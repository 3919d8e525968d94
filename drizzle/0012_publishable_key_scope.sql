ALTER TABLE "response_feedback" DROP CONSTRAINT "response_feedback_idempotency_key_unique";--> statement-breakpoint
ALTER TABLE "publishable_keys" ADD COLUMN "project" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "publishable_keys" ALTER COLUMN "project" DROP DEFAULT;--> statement-breakpoint
ALTER TABLE "publishable_keys" ADD COLUMN "model_ids" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "publishable_keys" ADD COLUMN "trust_corrections" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "llm_responses" ADD COLUMN "project" text;--> statement-breakpoint
ALTER TABLE "llm_responses" ADD COLUMN "source_key_id" bigint;--> statement-breakpoint
ALTER TABLE "response_feedback" ADD COLUMN "source_key_id" bigint;--> statement-breakpoint
ALTER TABLE "response_feedback" ADD COLUMN "trusted" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "llm_responses" ADD CONSTRAINT "llm_responses_source_key_id_publishable_keys_id_fk" FOREIGN KEY ("source_key_id") REFERENCES "public"."publishable_keys"("id") ON DELETE no action ON UPDATE no action NOT VALID;--> statement-breakpoint
ALTER TABLE "response_feedback" ADD CONSTRAINT "response_feedback_source_key_id_publishable_keys_id_fk" FOREIGN KEY ("source_key_id") REFERENCES "public"."publishable_keys"("id") ON DELETE no action ON UPDATE no action NOT VALID;--> statement-breakpoint
CREATE INDEX "llm_responses_source_key_idx" ON "llm_responses" USING btree ("source_key_id") WHERE "llm_responses"."source_key_id" IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "response_feedback_idempotency_idx" ON "response_feedback" USING btree (coalesce("source_key_id", 0),"idempotency_key");--> statement-breakpoint
CREATE INDEX "response_feedback_source_key_idx" ON "response_feedback" USING btree ("source_key_id") WHERE "response_feedback"."source_key_id" IS NOT NULL;