import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  raw: string;
  body: any;
  /** Whether X-Caliber-Signature is the HMAC-SHA256 of the raw body with the shared secret (checked here, not by Caliber's code). */
  signatureValid: boolean;
  /** What the receiver answered (0: it never answered). */
  answered: number;
}

/** A step of a receiver's plan: answer with a status, or hold the request past the sender's timeout. */
export type Answer = number | { status: number; headers?: Record<string, string>; body?: string; delayMs?: number } | 'hang';

/**
 * A webhook endpoint as a customer would run it: it checks the signature on the raw bytes and
 * answers each request as planned for its subject (`<language>/<size_category>` of the body),
 * 200 once a plan is used up.
 */
export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  readonly #plans = new Map<string, Answer[]>();
  readonly #hanging = new Set<() => void>();
  #server: Server | undefined;

  constructor(readonly secret: string) {}

  plan(subject: string, answers: Answer[]): void {
    this.#plans.set(subject, [...answers]);
  }

  /** Requests about one subject, in arrival order. */
  about(subject: string): ReceivedWebhook[] {
    return this.received.filter((r) => `${r.body?.language}/${r.body?.size_category}` === subject);
  }

  async start(): Promise<string> {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let body: any;
        try {
          body = JSON.parse(raw);
        } catch {
          body = undefined;
        }
        const expected = Buffer.from(`sha256=${createHmac('sha256', this.secret).update(raw).digest('hex')}`);
        const given = Buffer.from(String(req.headers['x-caliber-signature'] ?? ''));
        const entry: ReceivedWebhook = { headers: req.headers, raw, body, signatureValid: expected.length === given.length && timingSafeEqual(expected, given), answered: 0 };
        this.received.push(entry);
        const subject = `${body?.language}/${body?.size_category}`;
        const answer: Answer = this.#plans.get(subject)?.shift() ?? (entry.signatureValid ? 200 : 401);
        if (answer === 'hang') {
          const release = () => res.destroy();
          this.#hanging.add(release);
          res.on('close', () => this.#hanging.delete(release));
          return;
        }
        const { status, headers, body: text, delayMs } = typeof answer === 'number' ? { status: answer, headers: {}, body: undefined, delayMs: 0 } : answer;
        const reply = () => {
          entry.answered = status;
          res.writeHead(status, { 'content-type': 'application/json', ...headers });
          res.end(text ?? JSON.stringify({ ok: status < 300 }));
        };
        if (delayMs) setTimeout(reply, delayMs);
        else reply();
      });
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/hooks/caliber`;
  }

  async stop(): Promise<void> {
    for (const release of this.#hanging) release();
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}
