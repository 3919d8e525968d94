import { ApiError, type Executor } from '@caliber/platform';
import { sql } from 'drizzle-orm';

/** Starting a job needs more credits than the account holds: 402, and nothing is written. */
export class InsufficientCreditsError extends ApiError {
  constructor(accountId: string, balance: number, required: number) {
    super(402, 'insufficient_credits', `Account "${accountId}" has ${balance} credits; a fine-tuning job needs ${required}`, { balance, required });
  }
}

export type LedgerEntry = {
  id: number;
  kind: 'grant' | 'reserve' | 'settle' | 'refund';
  amount: number;
  job_id: string | null;
  note: string | null;
  created_at: string;
};

export type AccountCredits = {
  account_id: string;
  /** What the account may spend now: the sum of its ledger (reservations already taken off). */
  balance: number;
  /** Held by jobs that have not ended; refunded if they fail or are cancelled. */
  reserved: number;
};

/** Balance and open reservations of accounts, in one query. */
export async function accountCredits(db: Pick<Executor, 'execute'>, accountIds: string[]): Promise<Map<string, AccountCredits>> {
  if (accountIds.length === 0) return new Map();
  const rows = await db.execute<AccountCredits>(sql`
    SELECT a.id AS account_id,
           coalesce((SELECT sum(l.amount) FROM credit_ledger l WHERE l.account_id = a.id), 0)::bigint AS balance,
           coalesce((SELECT -sum(r.amount) FROM credit_ledger r
                      WHERE r.account_id = a.id AND r.kind = 'reserve'
                        AND NOT EXISTS (SELECT 1 FROM credit_ledger o WHERE o.job_id = r.job_id AND o.kind IN ('settle', 'refund'))), 0)::bigint AS reserved
      FROM credit_accounts a
     WHERE a.id = ANY(${sql.param([...new Set(accountIds)])}::text[])`);
  return new Map(rows.rows.map((r) => [r.account_id, r]));
}

/**
 * Adds credits, creating the account on its first grant. A grant sent again with the same
 * idempotency key is stored once (`duplicate`).
 */
export async function grantCredits(
  db: { transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> },
  grant: { accountId: string; amount: number; note?: string; idempotencyKey?: string },
): Promise<AccountCredits & { duplicate: boolean; entry_id: number | null }> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`INSERT INTO credit_accounts (id) VALUES (${grant.accountId}) ON CONFLICT (id) DO NOTHING`);
    const inserted = await tx.execute<{ id: number }>(sql`
      INSERT INTO credit_ledger (account_id, kind, amount, note, idempotency_key)
      VALUES (${grant.accountId}, 'grant', ${grant.amount}, ${grant.note ?? null}, ${grant.idempotencyKey ?? null})
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING id`);
    if (inserted.rows.length === 0) {
      // The key was used before (or by a grant committing at this moment, which the insert waited for).
      const earlier = (await tx.execute<{ id: number; account_id: string; amount: number }>(
        sql`SELECT id, account_id, amount FROM credit_ledger WHERE idempotency_key = ${grant.idempotencyKey ?? null}`,
      )).rows[0]!;
      if (earlier.account_id !== grant.accountId || earlier.amount !== grant.amount) {
        throw new ApiError(409, 'conflict', `idempotency_key "${grant.idempotencyKey}" was used for a different grant (${earlier.amount} to "${earlier.account_id}")`);
      }
    }
    const credits = (await accountCredits(tx, [grant.accountId])).get(grant.accountId)!;
    return { ...credits, duplicate: inserted.rows.length === 0, entry_id: inserted.rows[0]?.id ?? null };
  });
}

/**
 * Takes `amount` from the account for a job, inside the caller's transaction. The account row is
 * locked first, so two jobs starting at once cannot both spend the last credits. A job reserves
 * once: a second call for the same job changes nothing and returns false.
 */
export async function reserveCredits(tx: Executor, accountId: string, jobId: string, amount: number): Promise<boolean> {
  const account = await tx.execute(sql`SELECT id FROM credit_accounts WHERE id = ${accountId} FOR UPDATE`);
  if (account.rows.length === 0) throw new ApiError(404, 'not_found', `No credit account "${accountId}"`);
  const already = await tx.execute(sql`SELECT 1 FROM credit_ledger WHERE job_id = ${jobId} AND kind = 'reserve'`);
  if (already.rows.length > 0) return false;
  const balance = (await tx.execute<{ balance: number }>(sql`SELECT coalesce(sum(amount), 0)::bigint AS balance FROM credit_ledger WHERE account_id = ${accountId}`)).rows[0]!.balance;
  if (balance < amount) throw new InsufficientCreditsError(accountId, balance, amount);
  await tx.execute(sql`
    INSERT INTO credit_ledger (account_id, kind, amount, job_id, note)
    VALUES (${accountId}, 'reserve', ${-amount}, ${jobId}, 'fine-tuning job started')`);
  return true;
}

/**
 * Closes a job's reservation, inside the transaction that ends the job: `settle` charges it,
 * `refund` gives it back. The partial unique index on the ledger allows one of the two per job, so
 * this happens exactly once however often the job is retried; without a reservation it is a no-op.
 */
export async function closeReservation(tx: Executor, jobId: string, outcome: 'settle' | 'refund', note: string): Promise<number> {
  const closed = await tx.execute<{ amount: number }>(sql`
    INSERT INTO credit_ledger (account_id, kind, amount, job_id, note)
    SELECT account_id, ${outcome}, ${outcome === 'settle' ? sql`0` : sql`-amount`}, job_id, ${note}
      FROM credit_ledger WHERE job_id = ${jobId} AND kind = 'reserve'
    ON CONFLICT (job_id) WHERE kind IN ('settle', 'refund') DO NOTHING
    RETURNING amount`);
  return closed.rows[0]?.amount ?? 0;
}

/** A page of an account's ledger, newest first. */
export async function ledgerPage(db: Pick<Executor, 'execute'>, accountId: string, opts: { limit: number; before?: number }): Promise<{ entries: LedgerEntry[]; next_cursor: string | null }> {
  const rows = await db.execute<LedgerEntry & { created_at: Date }>(sql`
    SELECT id, kind, amount, job_id, note, created_at FROM credit_ledger
     WHERE account_id = ${accountId} ${opts.before !== undefined ? sql`AND id < ${opts.before}` : sql``}
     ORDER BY id DESC LIMIT ${opts.limit}`);
  const entries = rows.rows.map((r) => ({ ...r, created_at: new Date(r.created_at).toISOString() }));
  return { entries, next_cursor: entries.length === opts.limit ? String(entries.at(-1)!.id) : null };
}
