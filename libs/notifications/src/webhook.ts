import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-caliber-signature';

/** `sha256=<hex HMAC-SHA256 of the raw body>`, the value of X-Caliber-Signature. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

/** What a receiver does with X-Caliber-Signature: recompute over the raw body, compare in constant time. */
export function verifySignature(secret: string, body: string, header: string | null | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(signBody(secret, body));
  const given = Buffer.from(header);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

export type DeliveryOutcome =
  | { outcome: 'delivered'; statusCode: number; response: string }
  | { outcome: 'retry'; statusCode: number | null; error: string; response: string | null; retryAfterMs: number | null }
  | { outcome: 'failed'; statusCode: number | null; error: string; response: string };

/** Statuses worth trying again: the receiver is down or overloaded, not refusing this body. */
const RETRYABLE = new Set([408, 425, 429]);
const RESPONSE_EXCERPT = 1_000;

/** `Retry-After` in seconds or as an HTTP date, in ms from now; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : null;
}

async function readExcerpt(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < RESPONSE_EXCERPT) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    // The rest of a big answer is not wanted; cancelling frees the connection.
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).toString('utf8').slice(0, RESPONSE_EXCERPT);
}

/**
 * One POST of a signed body. 2xx: delivered. 5xx, 408, 425, 429, a timeout or a network error: worth
 * retrying. Any other status (4xx, or a redirect, which is not followed: the URL is wrong) is final.
 */
export async function postWebhook(opts: {
  url: string;
  body: string;
  secret: string;
  headers: Record<string, string>;
  timeoutMs: number;
}): Promise<DeliveryOutcome> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  let res: Response;
  try {
    res = await fetch(opts.url, {
      method: 'POST',
      redirect: 'manual',
      signal,
      headers: {
        'content-type': 'application/json',
        'user-agent': 'Caliber-Webhook/1',
        ...opts.headers,
        [SIGNATURE_HEADER]: signBody(opts.secret, opts.body),
      },
      body: opts.body,
    });
  } catch (err) {
    const { message, permanent } = describeFetchError(err, opts.timeoutMs);
    const error = scrubUrl(message, opts.url);
    // A request fetch refuses to make (a port it blocks, a URL it cannot use) fails the same way every time.
    if (permanent) return { outcome: 'failed', statusCode: null, error, response: '' };
    return { outcome: 'retry', statusCode: null, error, response: null, retryAfterMs: null };
  }
  let response: string;
  try {
    response = await readExcerpt(res);
  } catch (err) {
    // The status is in, but the answer stalled: count it by its status, say what happened.
    response = `(answer not read: ${scrubUrl(describeFetchError(err, opts.timeoutMs).message, opts.url)})`;
  }
  const { status } = res;
  if (status >= 200 && status < 300) return { outcome: 'delivered', statusCode: status, response };
  if (status >= 500 || RETRYABLE.has(status)) {
    return { outcome: 'retry', statusCode: status, error: `HTTP ${status}`, response, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
  }
  const why = status >= 300 && status < 400 ? `HTTP ${status} redirect to ${res.headers.get('location') ?? '?'} (not followed: set NOTIFY_WEBHOOK_URL to the final URL)` : `HTTP ${status}`;
  return { outcome: 'failed', statusCode: status, error: why, response };
}

/** What went wrong in words, and whether trying again could help. */
function describeFetchError(err: unknown, timeoutMs: number): { message: string; permanent: boolean } {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return { message: `timed out after ${timeoutMs} ms`, permanent: false };
  const cause = e?.cause;
  if (cause?.code) return { message: `${cause.code}${cause.message ? `: ${cause.message}` : ''}`, permanent: false };
  // undici: "fetch failed" with a cause for network trouble, except ports it never connects to.
  if (cause?.message === 'bad port') return { message: 'fetch refuses to connect to this port (a "bad port"); use another', permanent: true };
  if (e instanceof TypeError && e.message !== 'fetch failed') return { message: e.message, permanent: true };
  return { message: cause?.message ? `${e?.message ?? 'fetch failed'}: ${cause.message}` : String(e?.message ?? err), permanent: false };
}

/** The webhook URL may carry a token: it never goes into a stored or logged error. */
function scrubUrl(text: string, url: string): string {
  let out = text;
  for (const form of new Set([url, safeHref(url)])) if (form) out = out.split(form).join('<NOTIFY_WEBHOOK_URL>');
  return out;
}

function safeHref(url: string): string | undefined {
  try {
    return new URL(url).href;
  } catch {
    return undefined;
  }
}

/** Exponential backoff with jitter: base·2^(n−1), between half and all of it, capped; Retry-After wins when longer. */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number, retryAfterMs: number | null, random = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  const jittered = exp / 2 + (random() * exp) / 2;
  return Math.round(Math.min(maxMs, Math.max(jittered, retryAfterMs ?? 0)));
}
