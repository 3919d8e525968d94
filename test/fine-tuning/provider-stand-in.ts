import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/**
 * A local server speaking the OpenAI files and fine-tuning API (the shapes of api.openai.com/v1),
 * standing in for any OpenAI-compatible provider in tests: the production client is what talks to
 * it. A job advances one status per poll through `script`; base models containing "fail" end
 * failed; `hold` keeps jobs running until released; `failNext` answers the next requests with an
 * error; `holdCreate` keeps the answer to a job creation (after the job exists) until released.
 */
export interface StandInJob {
  id: string;
  object: 'fine_tuning.job';
  model: string;
  training_file: string;
  validation_file: string | null;
  status: string;
  fine_tuned_model: string | null;
  error: { code: string; message: string; param: string | null } | null;
  created_at: number;
  finished_at: number | null;
  trained_tokens: number | null;
  organization_id: string;
  result_files: string[];
  seed: number;
  hyperparameters: Record<string, unknown>;
  metadata: Record<string, string> | null;
  polls: number;
  events: { object: 'fine_tuning.job.event'; id: string; created_at: number; level: string; message: string; type: string }[];
}

export interface StandInFile {
  id: string;
  filename: string;
  purpose: string;
  bytes: number;
  lines: unknown[];
}

const SUCCESS = ['validating_files', 'queued', 'running', 'running', 'succeeded'];
const FAILURE = ['validating_files', 'queued', 'running', 'failed'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export class ProviderStandIn {
  readonly files = new Map<string, StandInFile>();
  readonly jobs = new Map<string, StandInJob>();
  readonly requests: { method: string; path: string; authorization: string | undefined }[] = [];
  hold = false;
  #fail: { count: number; status: number; matches: (method: string, path: string) => boolean }[] = [];
  #createGate: Promise<void> | undefined;
  #releaseCreate: (() => void) | undefined;
  #server: Server | undefined;
  #n = 0;
  url = '';

  constructor(public apiKey = 'sk-stand-in-secret-0001') {}

  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => this.#send(res, 500, { error: { message: String(err), type: 'server_error', param: null, code: null } }));
    });
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.#server!.address() as { port: number }).port}/v1`;
    return this;
  }

  async stop(): Promise<void> {
    this.#releaseCreate?.();
    this.#server?.closeAllConnections();
    await new Promise<void>((r) => this.#server?.close(() => r()) ?? r());
  }

  /** The next `count` requests that `matches` (default: any) answer `status`, with a short Retry-After. */
  failNext(count: number, status = 503, matches: (method: string, path: string) => boolean = () => true): void {
    this.#fail.push({ count, status, matches });
  }

  /** Job creations answer only after `release()` (the job exists at once). */
  holdCreate(): () => void {
    this.#createGate = new Promise((r) => (this.#releaseCreate = r));
    return () => {
      this.#createGate = undefined;
      this.#releaseCreate?.();
    };
  }

  release(): void {
    this.hold = false;
  }

  #send(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': `req_${++this.#n}` }).end(JSON.stringify(body));
  }

  #error(res: ServerResponse, status: number, message: string, code: string | null = null): void {
    this.#send(res, status, { error: { message, type: 'invalid_request_error', param: null, code } });
  }

  #public(job: StandInJob) {
    const { polls: _polls, events: _events, ...rest } = job;
    return rest;
  }

  #advance(job: StandInJob): void {
    if (TERMINAL.has(job.status)) return;
    const script = job.model.includes('fail') ? FAILURE : SUCCESS;
    const next = script[Math.min(job.polls + 1, script.length - 1)]!;
    if (this.hold && TERMINAL.has(next)) return;
    job.polls++;
    if (next === job.status) return;
    job.status = next;
    const at = Math.floor(Date.now() / 1000);
    job.events.push({ object: 'fine_tuning.job.event', id: `ftevent-${job.id}-${job.events.length + 1}`, created_at: at, level: next === 'failed' ? 'error' : 'info', message: `Job ${next}`, type: 'message' });
    if (next === 'succeeded') {
      job.fine_tuned_model = `ft:${job.model}:caliber::${job.id.slice(-8)}`;
      job.finished_at = at;
      job.trained_tokens = 1234;
    }
    if (next === 'failed') {
      job.error = { code: 'invalid_training_file', message: `The training file does not suit ${job.model}`, param: 'training_file' };
      job.finished_at = at;
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const path = url.pathname.replace(/^\/v1/, '');
    this.requests.push({ method: req.method ?? '', path, authorization: req.headers.authorization });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const fault = this.#fail.find((f) => f.matches(req.method ?? '', path));
    if (fault) {
      if (--fault.count <= 0) this.#fail.splice(this.#fail.indexOf(fault), 1);
      res.setHeader('retry-after-ms', '20');
      return this.#error(res, fault.status, 'The server is overloaded', null);
    }
    if (req.headers.authorization !== `Bearer ${this.apiKey}`) return this.#error(res, 401, 'Incorrect API key provided', 'invalid_api_key');

    if (req.method === 'POST' && path === '/files') {
      const form = await new Request('http://stand-in/files', { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body }).formData();
      const file = form.get('file');
      if (form.get('purpose') !== 'fine-tune' || !(file instanceof Blob)) return this.#error(res, 400, 'purpose must be fine-tune and file a file');
      const text = await file.text();
      let lines: unknown[];
      try {
        lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown);
      } catch {
        return this.#error(res, 400, 'Invalid file format: not JSONL', 'invalid_file');
      }
      const id = `file-${++this.#n}`;
      const name = (file as File).name ?? 'upload.jsonl';
      this.files.set(id, { id, filename: name, purpose: 'fine-tune', bytes: file.size, lines });
      return this.#send(res, 200, { id, object: 'file', bytes: file.size, created_at: Math.floor(Date.now() / 1000), filename: name, purpose: 'fine-tune', status: 'processed' });
    }

    if (req.method === 'POST' && path === '/fine_tuning/jobs') {
      const params = JSON.parse(body.toString()) as { model?: string; training_file?: string; validation_file?: string; metadata?: Record<string, string> };
      if (!params.model) return this.#error(res, 400, 'model is required');
      if (!params.training_file || !this.files.has(params.training_file)) return this.#error(res, 400, `invalid training_file: ${params.training_file}`, 'invalid_file');
      if (params.validation_file && !this.files.has(params.validation_file)) return this.#error(res, 400, `invalid validation_file: ${params.validation_file}`, 'invalid_file');
      const id = `ftjob-${String(++this.#n).padStart(8, '0')}`;
      const job: StandInJob = {
        id,
        object: 'fine_tuning.job',
        model: params.model,
        training_file: params.training_file,
        validation_file: params.validation_file ?? null,
        status: 'validating_files',
        fine_tuned_model: null,
        error: null,
        created_at: Math.floor(Date.now() / 1000),
        finished_at: null,
        trained_tokens: null,
        organization_id: 'org-stand-in',
        result_files: [],
        seed: 42,
        hyperparameters: { n_epochs: 'auto' },
        metadata: params.metadata ?? null,
        polls: 0,
        events: [{ object: 'fine_tuning.job.event', id: `ftevent-${id}-0`, created_at: Math.floor(Date.now() / 1000), level: 'info', message: `Created fine-tuning job: ${id}`, type: 'message' }],
      };
      this.jobs.set(id, job);
      if (this.#createGate) await this.#createGate;
      return this.#send(res, 200, this.#public(job));
    }

    if (req.method === 'GET' && path === '/fine_tuning/jobs') {
      const limit = Number(url.searchParams.get('limit') ?? 20);
      const after = url.searchParams.get('after');
      const all = [...this.jobs.values()].reverse();
      const start = after ? all.findIndex((j) => j.id === after) + 1 : 0;
      const page = all.slice(start, start + limit);
      return this.#send(res, 200, { object: 'list', data: page.map((j) => this.#public(j)), has_more: start + limit < all.length });
    }

    const m = /^\/fine_tuning\/jobs\/([^/]+)(\/cancel|\/events)?$/.exec(path);
    const job = m ? this.jobs.get(m[1]!) : undefined;
    if (m && !job) return this.#error(res, 404, `No such fine-tuning job: ${m[1]}`, 'fine_tune_not_found');
    if (job && req.method === 'GET' && !m![2]) {
      this.#advance(job);
      return this.#send(res, 200, this.#public(job));
    }
    if (job && req.method === 'POST' && m![2] === '/cancel') {
      if (TERMINAL.has(job.status)) return this.#error(res, 400, `Job has already ${job.status}`);
      job.status = 'cancelled';
      job.finished_at = Math.floor(Date.now() / 1000);
      job.events.push({ object: 'fine_tuning.job.event', id: `ftevent-${job.id}-${job.events.length + 1}`, created_at: job.finished_at, level: 'info', message: 'Job cancelled', type: 'message' });
      return this.#send(res, 200, this.#public(job));
    }
    if (job && req.method === 'GET' && m![2] === '/events') {
      const limit = Number(url.searchParams.get('limit') ?? 20);
      return this.#send(res, 200, { object: 'list', data: [...job.events].reverse().slice(0, limit), has_more: job.events.length > limit });
    }
    return this.#error(res, 404, `Unknown route ${req.method} ${path}`);
  }
}
