import { ApiError, projectSchema, type Database } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { classifyComment } from './classifier.ts';
import { ERROR_CATEGORY_NAMES } from './taxonomy.ts';

/** Postgres text and jsonb cannot hold NUL: refused here as bad input rather than failing at the database. */
const noNul = (s: string) => !s.includes('\u0000');
const text = (max: number) => z.string().max(max).refine(noNul, 'must not contain NUL characters');
const id = (what: string) => z.string().min(1).max(200).refine(noNul, 'must not contain NUL characters').openapi({ description: what });
const comment = text(10_000).optional();
const idempotencyKey = z.string().min(1).max(200).optional().openapi({ description: 'Sent again with the same key, the feedback is stored once' });

const thumbs = z.object({ type: z.literal('thumbs'), thumbs_up: z.boolean(), comment, idempotency_key: idempotencyKey }).strict();
const stars = z.object({ type: z.literal('stars'), stars: z.number().int().min(1).max(5), comment, idempotency_key: idempotencyKey }).strict();
const full = z
  .object({
    type: z.literal('full'),
    thumbs_up: z.boolean().optional(),
    stars: z.number().int().min(1).max(5).optional(),
    categories: z
      .array(z.enum(ERROR_CATEGORY_NAMES))
      .max(ERROR_CATEGORY_NAMES.length)
      .refine((c) => new Set(c).size === c.length, 'categories must not repeat')
      .default([]),
    comment,
    correction: text(1_000_000).optional().openapi({ description: 'What the response should have said' }),
    idempotency_key: idempotencyKey,
  })
  .strict();

/** Feedback without the response it is about (as sent inline with a response). */
export const feedbackContentSchema = z.discriminatedUnion('type', [thumbs, stars, full]);
export type FeedbackContent = z.infer<typeof feedbackContentSchema>;

export const feedbackSchema = z
  .discriminatedUnion('type', [
    thumbs.extend({ response_id: id('The response this feedback is about') }),
    stars.extend({ response_id: id('The response this feedback is about') }),
    full.extend({ response_id: id('The response this feedback is about') }),
  ])
  .openapi('Feedback');
export type Feedback = z.infer<typeof feedbackSchema>;

export const responseSchema = z
  .object({
    response_id: id("The product's own id of the response"),
    model_id: id('The model that produced it'),
    query: text(1_000_000),
    response: text(1_000_000),
    timestamp: z
      .union([z.iso.datetime({ offset: true }), z.number().int().nonnegative().max(8.64e15)])
      .optional()
      .openapi({ description: 'When it was shown (ISO-8601, or Unix ms); default now' }),
    metadata: z
      .record(z.string(), z.unknown())
      .refine((m) => !JSON.stringify(m).includes('\\u0000'), 'must not contain NUL characters')
      .optional(),
    project: projectSchema.optional().openapi({ description: 'The product project it belongs to: publishable keys of that project (the feedback widget) may give feedback on it' }),
    feedback: feedbackContentSchema.optional(),
  })
  .strict()
  .openapi('LlmResponse');
export type LlmResponse = z.infer<typeof responseSchema>;

/** One item, or `{"items":[…]}` of up to 10 000. */
export function singleOrBatch<T extends z.ZodType>(item: T) {
  return z.union([item, z.object({ items: z.array(item).min(1).max(10_000) }).strict()]);
}

/** Thumbs down, two stars or fewer, or any error category. */
export function isNegative(f: FeedbackContent): boolean {
  if (f.type === 'thumbs') return !f.thumbs_up;
  if (f.type === 'stars') return f.stars <= 2;
  return f.categories.length > 0 || f.thumbs_up === false || (f.stars !== undefined && f.stars <= 2);
}

/**
 * Who is writing: a server (admin key; `undefined`) or a web page's publishable key, which writes
 * only into its project and whose corrections train nothing unless the key is trusted.
 */
export type FeedbackSource = { keyId: number; project: string; modelIds: string[]; trustCorrections: boolean } | undefined;

function feedbackRow(responseRef: number, f: FeedbackContent, source: FeedbackSource) {
  return {
    response_ref: responseRef,
    type: f.type,
    thumbs_up: f.type === 'stars' ? null : (f.thumbs_up ?? null),
    stars: f.type === 'thumbs' ? null : (f.stars ?? null),
    categories: f.type === 'full' ? f.categories : [],
    comment_categories: classifyComment(f.comment),
    comment: f.comment ?? null,
    correction: f.type === 'full' ? (f.correction ?? null) : null,
    negative: isNegative(f),
    idempotency_key: f.idempotency_key ?? null,
    source_key_id: source?.keyId ?? null,
    trusted: source === undefined || source.trustCorrections,
  };
}

type FeedbackRow = ReturnType<typeof feedbackRow>;

async function insertFeedback(tx: Pick<Database, 'execute'>, rows: FeedbackRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  const inserted = await tx.execute(sql`
    INSERT INTO response_feedback (response_ref, type, thumbs_up, stars, categories, comment_categories, comment, correction, negative, idempotency_key, source_key_id, trusted)
    SELECT response_ref, type, thumbs_up, stars, ARRAY(SELECT jsonb_array_elements_text(categories)),
           ARRAY(SELECT jsonb_array_elements_text(comment_categories)), comment, correction, negative, idempotency_key, source_key_id, trusted
      FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(
        response_ref bigint, type text, thumbs_up boolean, stars smallint, categories jsonb, comment_categories jsonb, comment text,
        correction text, negative boolean, idempotency_key text, source_key_id bigint, trusted boolean)
    ON CONFLICT (coalesce(source_key_id, 0), idempotency_key) DO NOTHING
    RETURNING id`);
  return inserted.rows.length;
}

function duplicateKeys(items: { idempotency_key?: string }[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const i of items) {
    if (!i.idempotency_key) continue;
    if (seen.has(i.idempotency_key)) dup.add(i.idempotency_key);
    seen.add(i.idempotency_key);
  }
  return [...dup];
}

/**
 * Stores responses (and any feedback sent with them) in one transaction: one multi-row insert
 * each. A response id already stored keeps its first version (`already_recorded`), except that a
 * server's record replaces one a web page made: a page cannot squat the ids a server will use.
 */
export async function recordResponses(db: Database, items: LlmResponse[], source?: FeedbackSource): Promise<{ recorded: number; already_recorded: number; feedback: number }> {
  if (source) {
    const elsewhere = items.find((r) => r.project !== undefined && r.project !== source.project);
    if (elsewhere) throw new ApiError(403, 'forbidden', `This publishable key records into project ${source.project}, not ${elsewhere.project}`);
    const model = items.find((r) => source.modelIds.length > 0 && !source.modelIds.includes(r.model_id));
    if (model) throw new ApiError(403, 'forbidden', `This publishable key may not record responses of model ${model.model_id}`);
  }
  const ids = items.map((r) => r.response_id);
  if (new Set(ids).size !== ids.length) throw new ApiError(400, 'invalid_request', 'The same response_id appears twice in one request');
  const withFeedback = items.filter((r) => r.feedback).map((r) => r.feedback!);
  const repeated = duplicateKeys(withFeedback);
  if (repeated.length > 0) throw new ApiError(400, 'invalid_request', `idempotency_key repeated in one request: ${repeated.slice(0, 5).join(', ')}`);
  return db.transaction(async (tx) => {
    const rows = items.map((r) => ({
      response_id: r.response_id,
      model_id: r.model_id,
      query: r.query,
      response: r.response,
      responded_at: r.timestamp === undefined ? null : typeof r.timestamp === 'number' ? new Date(r.timestamp).toISOString() : r.timestamp,
      metadata: r.metadata ?? {},
      project: source ? source.project : (r.project ?? null),
      source_key_id: source?.keyId ?? null,
    }));
    const incoming = sql`jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      AS i(response_id text, model_id text, query text, response text, responded_at timestamptz, metadata jsonb, project text, source_key_id bigint)`;
    const adopted = source ? [] : await adoptPageRecords(tx, incoming);
    const inserted = await tx.execute<{ id: number; response_id: string }>(sql`
      INSERT INTO llm_responses (response_id, model_id, query, response, responded_at, metadata, project, source_key_id)
      SELECT response_id, model_id, query, response, coalesce(responded_at, now()), metadata, project, source_key_id FROM ${incoming}
      ON CONFLICT (response_id) DO NOTHING
      RETURNING id, response_id`);
    const fresh = new Map([...inserted.rows, ...adopted].map((r) => [r.response_id, r.id]));
    // Feedback sent with a response that was already stored (a client retrying after a timeout, or
    // a widget after the server recorded the answer) is stored only with an idempotency key, which
    // makes it once; without one it is taken for a retry's copy. A page's reaches only its project.
    const repeatedWithKey = items.filter((r) => r.feedback?.idempotency_key && !fresh.has(r.response_id));
    const existing = repeatedWithKey.length > 0 ? await responseRefs(tx, repeatedWithKey.map((r) => r.response_id), source) : new Map<string, number>();
    const feedback = await insertFeedback(tx, [
      ...items.filter((r) => r.feedback && fresh.has(r.response_id)).map((r) => feedbackRow(fresh.get(r.response_id)!, r.feedback!, source)),
      ...repeatedWithKey.filter((r) => existing.has(r.response_id)).map((r) => feedbackRow(existing.get(r.response_id)!, r.feedback!, source)),
    ]);
    return { recorded: fresh.size, already_recorded: items.length - fresh.size, feedback };
  });
}

/**
 * A server recording an id a web page recorded first takes it over. If the page's record says
 * the same (project, model, query, response) it becomes the server's and keeps its feedback;
 * otherwise it is deleted with the feedback given on it (a page's made-up answer must not lend
 * its votes or corrections to the real one), and the server's is inserted afresh.
 */
async function adoptPageRecords(tx: Pick<Database, 'execute'>, incoming: ReturnType<typeof sql>): Promise<{ id: number; response_id: string }[]> {
  const pageRows = await tx.execute<{ id: number; response_id: string; differs: boolean }>(sql`
    SELECT l.id, l.response_id,
           (l.project IS DISTINCT FROM i.project OR l.model_id <> i.model_id OR l.query <> i.query OR l.response <> i.response) AS differs
      FROM llm_responses l JOIN ${incoming} ON i.response_id = l.response_id
     WHERE l.source_key_id IS NOT NULL
     ORDER BY l.id
       FOR UPDATE OF l`);
  if (pageRows.rows.length === 0) return [];
  const replaced = pageRows.rows.filter((r) => r.differs).map((r) => r.id);
  const same = pageRows.rows.filter((r) => !r.differs).map((r) => r.id);
  if (replaced.length > 0) await tx.execute(sql`DELETE FROM llm_responses WHERE id = ANY(${sql.param(replaced)}::bigint[])`);
  if (same.length === 0) return [];
  const updated = await tx.execute<{ id: number; response_id: string }>(sql`
    UPDATE llm_responses l SET source_key_id = NULL, metadata = i.metadata, responded_at = coalesce(i.responded_at, l.responded_at)
      FROM ${incoming}
     WHERE l.id = ANY(${sql.param(same)}::bigint[]) AND i.response_id = l.response_id
    RETURNING l.id, l.response_id`);
  return updated.rows.map((r) => ({ id: Number(r.id), response_id: r.response_id }));
}

async function responseRefs(tx: Pick<Database, 'execute'>, responseIds: string[], source: FeedbackSource): Promise<Map<string, number>> {
  // A publishable key sees only its project's responses: others are as unknown to it as missing ones.
  const found = await tx.execute<{ id: number; response_id: string }>(
    sql`SELECT id, response_id FROM llm_responses WHERE response_id = ANY(${sql.param([...new Set(responseIds)])}::text[])
        ${source ? sql`AND project = ${source.project}` : sql``}`,
  );
  return new Map(found.rows.map((r) => [r.response_id, r.id]));
}

/**
 * Stores feedback, all or nothing: an unknown response id is a 404 naming it and nothing is
 * written. Feedback whose idempotency key is already stored is skipped (`duplicates`).
 */
export async function recordFeedback(db: Database, items: Feedback[], source?: FeedbackSource): Promise<{ recorded: number; duplicates: number }> {
  const repeated = duplicateKeys(items);
  if (repeated.length > 0) throw new ApiError(400, 'invalid_request', `idempotency_key repeated in one request: ${repeated.slice(0, 5).join(', ')}`);
  return db.transaction(async (tx) => {
    const refs = await responseRefs(tx, items.map((f) => f.response_id), source);
    const unknown = [...new Set(items.map((f) => f.response_id).filter((r) => !refs.has(r)))];
    if (unknown.length > 0) {
      throw new ApiError(404, 'not_found', `Unknown response_id: ${unknown.slice(0, 10).join(', ')}${unknown.length > 10 ? ` and ${unknown.length - 10} more` : ''}`, {
        unknown_response_ids: unknown.slice(0, 100),
      });
    }
    const recorded = await insertFeedback(
      tx,
      items.map(({ response_id, ...f }) => feedbackRow(refs.get(response_id)!, f as FeedbackContent, source)),
    );
    return { recorded, duplicates: items.length - recorded };
  });
}
