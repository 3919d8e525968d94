import { ERROR_CATEGORIES } from '@caliber/response-quality/taxonomy';

export const VARIANTS = ['thumbs', 'stars', 'full'] as const;
export type Variant = (typeof VARIANTS)[number];
export type FeedbackState = 'idle' | 'sending' | 'sent' | 'failed';

type Content =
  | { type: 'thumbs'; thumbs_up: boolean }
  | { type: 'stars'; stars: number }
  | { type: 'full'; categories: string[]; comment?: string; correction?: string; thumbs_up?: boolean };

const STYLE = `
:host { display: inline-block; font: inherit; color: var(--caliber-text, inherit); }
.bar { display: inline-flex; align-items: center; gap: .25rem; flex-wrap: wrap; }
button { font: inherit; cursor: pointer; color: inherit; background: var(--caliber-bg, transparent); border: 1px solid var(--caliber-border, #c8ccd4);
  border-radius: var(--caliber-radius, 6px); padding: .15rem .5rem; line-height: 1.4; }
button:hover { border-color: var(--caliber-accent, #3b6fd8); }
button:focus-visible, input:focus-visible, textarea:focus-visible { outline: 2px solid var(--caliber-accent, #3b6fd8); outline-offset: 2px; }
button[aria-pressed="true"], button[aria-checked="true"] { background: var(--caliber-accent, #3b6fd8); border-color: var(--caliber-accent, #3b6fd8); color: var(--caliber-accent-text, #fff); }
button:disabled { opacity: .6; cursor: default; }
.star { border: none; padding: .1rem .15rem; font-size: 1.15em; }
.star[aria-checked="true"], .star.lit { background: transparent; color: var(--caliber-star, #e0a100); }
form { display: grid; gap: .5rem; margin-top: .5rem; padding: .6rem; border: 1px solid var(--caliber-border, #c8ccd4); border-radius: var(--caliber-radius, 6px); background: var(--caliber-panel, transparent); max-width: 32rem; }
fieldset { border: none; margin: 0; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr)); gap: .2rem .8rem; }
legend { font-weight: 600; margin-bottom: .2rem; }
label { display: flex; gap: .35rem; align-items: flex-start; font-size: .92em; }
textarea { font: inherit; width: 100%; box-sizing: border-box; min-height: 3.2em; border: 1px solid var(--caliber-border, #c8ccd4); border-radius: var(--caliber-radius, 6px); padding: .3rem; }
.field { display: grid; gap: .2rem; font-size: .92em; }
.status { font-size: .88em; margin: 0 .25rem; color: var(--caliber-muted, #5b6475); }
.status[data-state="failed"] { color: var(--caliber-error, #b3261e); }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;

const MESSAGES: Record<FeedbackState, string> = { idle: '', sending: 'Sending…', sent: 'Thanks for your feedback', failed: 'Feedback could not be sent' };

/**
 * `<caliber-feedback response-id model-id variant="thumbs|stars|full" publishable-key endpoint>`: collects a
 * user's feedback on one answer and sends it to Caliber with a publishable key. Set the `query`
 * and `response` properties to record the answer itself with the feedback (one request).
 * It retries a failed send once, reports its state in an `aria-live` region and a
 * `caliber-feedback` event, and never throws into the host page.
 */
// Importing the module where there is no DOM (server-side rendering) must not throw.
const Base = (typeof HTMLElement === 'undefined' ? class {} : HTMLElement) as typeof HTMLElement;

export class CaliberFeedbackElement extends Base {
  static observedAttributes = ['response-id', 'model-id', 'variant', 'publishable-key', 'endpoint'];

  /** The question and the answer, to record the response with the feedback. */
  query?: string;
  response?: string;
  /** Milliseconds before the one retry (tests shorten it). */
  retryDelayMs = 1_000;

  #state: FeedbackState = 'idle';
  #detail = '';
  #chosen: Content | undefined;
  #formOpen = false;
  /** The star the arrow keys have moved to, not yet sent. */
  #starChoice = 0;
  /** The idempotency key of the feedback being sent, kept for every retry of it (automatic or by hand). */
  #pendingKey: string | undefined;
  /** Bumped when the element is given another response: late answers about the old one are ignored. */
  #generation = 0;
  #root: ShadowRoot;

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: 'open' });
  }

  get state(): FeedbackState {
    return this.#state;
  }

  get variant(): Variant {
    const v = this.getAttribute('variant');
    return (VARIANTS as readonly string[]).includes(v ?? '') ? (v as Variant) : 'thumbs';
  }

  // Frameworks (React 19) set properties rather than attributes on custom elements.
  set variant(value: string) {
    this.setAttribute('variant', value);
  }

  connectedCallback(): void {
    this.#render();
  }

  attributeChangedCallback(name: string, previous: string | null, next: string | null): void {
    if (name === 'response-id' && previous !== null && previous !== next) {
      // Reused for another answer (a list, a framework): start afresh.
      this.#generation++;
      this.#state = 'idle';
      this.#detail = '';
      this.#chosen = undefined;
      this.#pendingKey = undefined;
      this.#formOpen = false;
      this.#starChoice = 0;
    }
    if (this.isConnected) this.#render();
  }

  /** Where the gateway is: the `endpoint` attribute, else the origin this script was loaded from. */
  set endpoint(value: string | null | undefined) {
    if (value) this.setAttribute('endpoint', value);
    else this.removeAttribute('endpoint');
  }

  get endpoint(): string {
    const attr = this.getAttribute('endpoint');
    if (attr) return attr.replace(/\/+$/, '');
    try {
      return new URL(import.meta.url).origin;
    } catch {
      return '';
    }
  }

  /** Sends feedback (what the buttons and the form call). Resolves to the final state; never rejects. */
  async send(content: Content): Promise<FeedbackState> {
    if (this.#state === 'sending' || this.#state === 'sent') return this.#state;
    const generation = this.#generation;
    if (this.#pendingKey === undefined || JSON.stringify(content) !== JSON.stringify(this.#chosen)) this.#pendingKey = undefined;
    this.#chosen = content;
    const responseId = this.getAttribute('response-id');
    const key = this.getAttribute('publishable-key');
    if (!responseId || !key) {
      this.#set('failed', 'The widget needs response-id and publishable-key attributes');
      return this.#state;
    }
    // One key per feedback, kept for every retry of it: the server stores it once whatever happens.
    this.#pendingKey ??= `cf-${globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`}`;
    const idempotencyKey = this.#pendingKey;
    const feedback = { ...content, idempotency_key: idempotencyKey };
    const modelId = this.getAttribute('model-id');
    const withResponse = modelId && this.query !== undefined && this.response !== undefined;
    const path = withResponse ? '/api/analytics/response-quality/response' : '/api/analytics/response-quality/feedback';
    const body = withResponse ? { response_id: responseId, model_id: modelId, query: this.query, response: this.response, feedback } : { response_id: responseId, ...feedback };
    this.#set('sending');
    for (let attempt = 1; attempt <= 2; attempt++) {
      const outcome = await this.#post(`${this.endpoint}${path}`, key, body);
      if (generation !== this.#generation) return this.#state; // the element moved on to another response
      if (outcome.ok) {
        this.#pendingKey = undefined;
        this.#set('sent');
        return this.#state;
      }
      // A server asking for a long pause gets it from the user, not from a waiting retry.
      const wait = outcome.retryAfterMs ?? this.retryDelayMs;
      if (!outcome.retry || attempt === 2 || wait > 5_000) {
        this.#set('failed', wait > 5_000 && outcome.retry ? `${outcome.message}; try again in ${Math.ceil(wait / 1000)} s` : outcome.message);
        return this.#state;
      }
      await new Promise((r) => setTimeout(r, wait));
      if (generation !== this.#generation) return this.#state;
    }
    return this.#state;
  }

  async #post(url: string, key: string, body: unknown): Promise<{ ok: boolean; retry: boolean; message: string; retryAfterMs?: number }> {
    try {
      // Bounded, so a hung connection cannot leave the widget sending for ever.
      const signal = typeof AbortSignal !== 'undefined' && 'timeout' in AbortSignal ? AbortSignal.timeout(10_000) : undefined;
      const res = await fetch(url, { method: 'POST', mode: 'cors', credentials: 'omit', keepalive: true, signal, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (res.ok) return { ok: true, retry: false, message: '' };
      let message = `HTTP ${res.status}`;
      try {
        message = ((await res.json()) as { error?: { message?: string } }).error?.message ?? message;
      } catch {
        // not JSON
      }
      const retryAfter = Number(res.headers.get('retry-after'));
      return { ok: false, retry: res.status >= 500 || res.status === 429 || res.status === 408, message, retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined };
    } catch (err) {
      // Network failure, or a refusal the browser hides (CORS): worth one more try.
      return { ok: false, retry: true, message: (err as Error)?.message || 'network error' };
    }
  }

  #set(state: FeedbackState, detail = ''): void {
    this.#state = state;
    this.#detail = detail;
    this.#render();
    try {
      this.dispatchEvent(new CustomEvent('caliber-feedback', { bubbles: true, composed: true, detail: { state, detail, feedback: this.#chosen, responseId: this.getAttribute('response-id') } }));
    } catch {
      // a host listener's error stays the host's
    }
  }

  #render(): void {
    const sending = this.#state === 'sending';
    const locked = sending || this.#state === 'sent';
    const root = this.#root;
    // What the user typed, ticked and focused survives the re-render.
    const form = root.querySelector('form');
    const typed = form ? { categories: [...form.querySelectorAll<HTMLInputElement>('input[name=category]:checked')].map((b) => b.value), comment: form.querySelector<HTMLTextAreaElement>('[name=comment]')?.value ?? '', correction: form.querySelector<HTMLTextAreaElement>('[name=correction]')?.value ?? '' } : undefined;
    const focused = root.activeElement as HTMLElement | null;
    const focusKey = focused ? `${focused.tagName}|${focused.getAttribute('part') ?? ''}|${focused.getAttribute('name') ?? ''}|${focused.getAttribute('aria-label') ?? ''}|${(focused as HTMLInputElement).value ?? ''}` : undefined;
    root.innerHTML = '';
    const style = document.createElement('style');
    style.textContent = STYLE;
    root.append(style);
    const bar = el('div', { class: 'bar', part: 'bar' });
    const variant = this.variant;
    if (variant === 'thumbs') {
      const chosen = this.#chosen?.type === 'thumbs' ? this.#chosen.thumbs_up : undefined;
      for (const up of [true, false]) {
        const b = el('button', { type: 'button', 'aria-label': up ? 'Helpful' : 'Not helpful', 'aria-pressed': String(chosen === up), part: up ? 'up' : 'down' });
        b.append(thumbIcon(up));
        b.disabled = locked;
        b.addEventListener('click', () => void this.send({ type: 'thumbs', thumbs_up: up }));
        bar.append(b);
      }
    } else if (variant === 'stars') {
      // A radio group (WAI-ARIA): arrows, Home and End move the choice; Enter, Space or a click sends it.
      // Once sent, the sent rating; before (and after a failure) the one the keys or a click chose.
      const sentStars = this.#chosen?.type === 'stars' ? this.#chosen.stars : 0;
      const chosen = this.#state === 'sent' || this.#state === 'sending' ? sentStars : this.#starChoice || sentStars;
      const group = el('div', { role: 'radiogroup', 'aria-label': 'Rate this answer from 1 to 5 stars', 'aria-describedby': 'stars-hint', class: 'bar' });
      for (let n = 1; n <= 5; n++) {
        const b = el('button', { type: 'button', role: 'radio', class: `star${n <= chosen ? ' lit' : ''}`, 'aria-checked': String(n === chosen), 'aria-label': `${n} star${n > 1 ? 's' : ''}`, tabindex: n === (chosen || 1) ? '0' : '-1', part: 'star' }, n <= chosen ? '★' : '☆');
        b.disabled = locked;
        b.addEventListener('click', () => {
          this.#starChoice = n;
          void this.send({ type: 'stars', stars: n });
        });
        b.addEventListener('keydown', (e) => {
          if (e.altKey || e.ctrlKey || e.metaKey) return; // the browser's own shortcuts (Alt+Left is Back)
          const moves: Record<string, number> = { ArrowRight: n + 1, ArrowDown: n + 1, ArrowLeft: n - 1, ArrowUp: n - 1, Home: 1, End: 5 };
          const to = moves[e.key];
          if (to === undefined) return;
          e.preventDefault();
          this.#starChoice = ((to - 1 + 5) % 5) + 1;
          this.#render();
          this.#root.querySelectorAll<HTMLButtonElement>('button[role=radio]')[this.#starChoice - 1]?.focus();
        });
        group.append(b);
      }
      bar.append(group, el('span', { id: 'stars-hint', class: 'sr' }, 'Arrow keys choose, Enter sends'));
    } else {
      const toggle = el('button', { type: 'button', 'aria-expanded': String(this.#formOpen), 'aria-controls': 'feedback-form', part: 'open' }, this.#state === 'sent' ? 'Feedback sent' : 'Give feedback');
      toggle.disabled = sending || this.#state === 'sent';
      toggle.addEventListener('click', () => {
        this.#formOpen = !this.#formOpen;
        this.#render();
        this.#root.querySelector<HTMLInputElement>('input')?.focus();
      });
      bar.append(toggle);
    }
    const status = el('p', { class: 'status', role: 'status', 'aria-live': 'polite', 'data-state': this.#state, part: 'status' }, this.#state === 'failed' && this.#detail ? `${MESSAGES.failed}: ${this.#detail}` : MESSAGES[this.#state]);
    bar.append(status);
    if (this.#state === 'failed' && this.#chosen) {
      const retry = el('button', { type: 'button', part: 'retry' }, 'Try again');
      retry.addEventListener('click', () => void this.send(this.#chosen!));
      bar.append(retry);
    }
    root.append(bar);
    if (variant === 'full' && this.#formOpen && this.#state !== 'sent') {
      const next = this.#form(sending);
      if (typed) {
        for (const box of next.querySelectorAll<HTMLInputElement>('input[name=category]')) box.checked = typed.categories.includes(box.value);
        next.querySelector<HTMLTextAreaElement>('[name=comment]')!.value = typed.comment;
        next.querySelector<HTMLTextAreaElement>('[name=correction]')!.value = typed.correction;
      }
      root.append(next);
    }
    if (focusKey) {
      const again = [...root.querySelectorAll<HTMLElement>('button, input, textarea')].find((e) => `${e.tagName}|${e.getAttribute('part') ?? ''}|${e.getAttribute('name') ?? ''}|${e.getAttribute('aria-label') ?? ''}|${(e as HTMLInputElement).value ?? ''}` === focusKey);
      (again ?? root.querySelector<HTMLElement>('[role=status]'))?.focus?.();
    }
  }

  #form(sending: boolean): HTMLFormElement {
    const form = el('form', { id: 'feedback-form', part: 'form', 'aria-label': 'Feedback on this answer' });
    const fieldset = el('fieldset', {});
    fieldset.append(el('legend', {}, 'What was wrong?'));
    for (const [name, description] of Object.entries(ERROR_CATEGORIES)) {
      const label = el('label', {});
      const box = el('input', { type: 'checkbox', name: 'category', value: name });
      label.append(box, document.createTextNode(`${name.replace(/_/g, ' ')}: ${description}`));
      fieldset.append(label);
    }
    const comment = el('label', { class: 'field' });
    comment.style.display = 'grid';
    const commentBox = el('textarea', { name: 'comment', maxlength: '10000' });
    comment.append(document.createTextNode('Comment'), commentBox);
    const correction = el('label', { class: 'field' });
    correction.style.display = 'grid';
    const correctionBox = el('textarea', { name: 'correction' });
    correction.append(document.createTextNode('Corrected answer'), correctionBox);
    const submit = el('button', { type: 'submit', part: 'submit' }, 'Send feedback');
    submit.disabled = sending;
    form.append(fieldset, comment, correction, submit);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const text = (v: FormDataEntryValue | null) => (typeof v === 'string' && v.trim() ? v.trim() : undefined);
      const content = { type: 'full' as const, categories: data.getAll('category').map(String), comment: text(data.get('comment')), correction: text(data.get('correction')) };
      if (content.categories.length === 0 && !content.comment && !content.correction) {
        // Nothing to send yet: say so, keep the form open.
        const status = this.#root.querySelector('[role=status]');
        if (status) status.textContent = 'Pick what was wrong, or write a comment or a correction';
        return;
      }
      void this.send(content);
    });
    return form;
  }
}

/** A thumb drawn inline (no emoji font needed: some systems have none). */
function thumbIcon(up: boolean): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '1.1em');
  svg.setAttribute('height', '1.1em');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '1.8');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.style.verticalAlign = '-0.15em';
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', 'M3 10h3.5v10H3zM6.5 20h10.2a2 2 0 0 0 2-1.6l1.3-6.2A2 2 0 0 0 18 10h-4.6l.7-3.6A2 2 0 0 0 12.2 4h-.4L6.5 10.5z');
  if (!up) path.setAttribute('transform', 'rotate(180 12 12)');
  svg.append(path);
  return svg;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string>, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Registers `<caliber-feedback>` once, however many copies of the script a page loads. */
export function defineCaliberFeedback(name = 'caliber-feedback'): void {
  if (typeof customElements !== 'undefined' && !customElements.get(name)) customElements.define(name, CaliberFeedbackElement);
}
