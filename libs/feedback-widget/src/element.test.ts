// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ERROR_CATEGORIES } from '@caliber/response-quality/taxonomy';
import { CaliberFeedbackElement, defineCaliberFeedback } from './element.ts';

defineCaliberFeedback();

interface Call {
  url: string;
  body: any;
  headers: Record<string, string>;
}
let calls: Call[] = [];
let answers: (number | 'network')[] = [];

beforeEach(() => {
  calls = [];
  answers = [];
  vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
    calls.push({ url, body: JSON.parse(String(init.body)), headers: init.headers as Record<string, string> });
    const answer = answers.shift() ?? 201;
    if (answer === 'network') throw new TypeError('Failed to fetch');
    return new Response(answer < 300 ? '{"recorded":1}' : JSON.stringify({ error: { code: 'x', message: `refused with ${answer}` } }), { status: answer, headers: { 'content-type': 'application/json' } });
  });
});
afterEach(() => {
  vi.unstubAllGlobals();
  document.body.innerHTML = '';
});

function mount(attrs: Record<string, string>): CaliberFeedbackElement {
  const node = document.createElement('caliber-feedback') as CaliberFeedbackElement;
  node.retryDelayMs = 1;
  for (const [k, v] of Object.entries({ 'response-id': 'r-1', 'publishable-key': 'clbp_test', endpoint: 'https://caliber.example', ...attrs })) node.setAttribute(k, v);
  document.body.append(node);
  return node;
}
const $ = (node: CaliberFeedbackElement, selector: string) => node.shadowRoot!.querySelector(selector) as HTMLElement;
const $$ = (node: CaliberFeedbackElement, selector: string) => [...node.shadowRoot!.querySelectorAll(selector)] as HTMLElement[];
const settled = (node: CaliberFeedbackElement) => vi.waitFor(() => expect(['sent', 'failed']).toContain(node.state));

describe('<caliber-feedback>', () => {
  it('thumbs: idle, then sending, then sent, with the feedback and the key', async () => {
    const node = mount({ variant: 'thumbs' });
    expect(node.state).toBe('idle');
    const [up, down] = $$(node, 'button');
    expect(up!.getAttribute('aria-label')).toBe('Helpful');
    expect(down!.getAttribute('aria-label')).toBe('Not helpful');
    const states: string[] = [];
    node.addEventListener('caliber-feedback', (e) => states.push((e as CustomEvent).detail.state));
    down!.click();
    expect(node.state).toBe('sending');
    await settled(node);
    expect(node.state).toBe('sent');
    expect(states).toEqual(['sending', 'sent']);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.url).toBe('https://caliber.example/api/analytics/response-quality/feedback');
    expect(calls[0]!.headers.authorization).toBe('Bearer clbp_test');
    expect(calls[0]!.body).toMatchObject({ response_id: 'r-1', type: 'thumbs', thumbs_up: false, idempotency_key: expect.stringMatching(/^cf-[0-9a-f-]{36}$/) });
    expect($(node, '[role=status]').textContent).toBe('Thanks for your feedback');
    expect($$(node, 'button')[1]!.getAttribute('aria-pressed')).toBe('true');
  });

  it('retries once after a 5xx or a network error, with the same idempotency key', async () => {
    answers = [503, 201];
    const node = mount({ variant: 'thumbs' });
    $$(node, 'button')[0]!.click();
    await settled(node);
    expect(node.state).toBe('sent');
    expect(calls).toHaveLength(2);
    expect(calls[1]!.body.idempotency_key).toBe(calls[0]!.body.idempotency_key);

    answers = ['network', 201];
    const other = mount({ variant: 'thumbs', 'response-id': 'r-2' });
    $$(other, 'button')[0]!.click();
    await settled(other);
    expect(other.state).toBe('sent');
  });

  it('fails after the retry, says so, and offers to try again', async () => {
    answers = [500, 502];
    const node = mount({ variant: 'stars' });
    $$(node, 'button')[2]!.click();
    await settled(node);
    expect(node.state).toBe('failed');
    expect(calls).toHaveLength(2);
    expect($(node, '[role=status]').textContent).toContain('Feedback could not be sent: refused with 502');
    const retry = $$(node, 'button').find((b) => b.textContent === 'Try again')!;
    answers = [201];
    retry.click();
    await vi.waitFor(() => expect(node.state).toBe('sent'));
    expect(calls.at(-1)!.body).toMatchObject({ type: 'stars', stars: 3 });
    // The same feedback, so the same key: the server stores it once even if an earlier try landed.
    expect(new Set(calls.map((c) => c.body.idempotency_key)).size).toBe(1);
  });

  it('locks its controls once sent: a second click stores nothing more', async () => {
    const node = mount({ variant: 'thumbs' });
    $$(node, 'button')[0]!.click();
    await settled(node);
    expect($$(node, 'button').every((b) => (b as HTMLButtonElement).disabled)).toBe(true);
    await node.send({ type: 'thumbs', thumbs_up: false });
    expect(calls).toHaveLength(1);
  });

  it('leaves a long Retry-After to the user instead of retrying into it', async () => {
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      calls.push({ url, body: JSON.parse(String(init.body)), headers: {} });
      return new Response(JSON.stringify({ error: { code: 'rate_limited', message: 'slow down' } }), { status: 429, headers: { 'retry-after': '42' } });
    });
    const node = mount({ variant: 'thumbs' });
    $$(node, 'button')[0]!.click();
    await settled(node);
    expect(node.state).toBe('failed');
    expect(calls).toHaveLength(1);
    expect($(node, '[role=status]').textContent).toContain('try again in 42 s');
  });

  it('keeps what was typed in the full form when sending fails', async () => {
    answers = [400];
    const node = mount({ variant: 'full' });
    $(node, 'button').click();
    ($(node, 'textarea[name=comment]') as HTMLTextAreaElement).value = 'keep me';
    ($$(node, 'input[type=checkbox]')[2] as HTMLInputElement).checked = true;
    ($(node, 'form') as HTMLFormElement).requestSubmit();
    await settled(node);
    expect(node.state).toBe('failed');
    expect(($(node, 'textarea[name=comment]') as HTMLTextAreaElement).value).toBe('keep me');
    expect(($$(node, 'input[type=checkbox]')[2] as HTMLInputElement).checked).toBe(true);
  });

  it('does not send an empty full form', async () => {
    const node = mount({ variant: 'full' });
    $(node, 'button').click();
    ($(node, 'form') as HTMLFormElement).requestSubmit();
    expect(calls).toHaveLength(0);
    expect(node.state).toBe('idle');
    expect($(node, '[role=status]').textContent).toContain('Pick what was wrong');
  });

  it('starts afresh when given another response', async () => {
    const node = mount({ variant: 'thumbs' });
    $$(node, 'button')[0]!.click();
    await settled(node);
    node.setAttribute('response-id', 'r-other');
    expect(node.state).toBe('idle');
    expect($$(node, 'button').some((b) => (b as HTMLButtonElement).disabled)).toBe(false);
  });

  it('does not retry what the server refused (4xx), and shows why', async () => {
    answers = [403];
    const node = mount({ variant: 'thumbs' });
    $$(node, 'button')[0]!.click();
    await settled(node);
    expect(node.state).toBe('failed');
    expect(calls).toHaveLength(1);
    expect($(node, '[role=status]').textContent).toContain('refused with 403');
  });

  it('fails without a key instead of throwing into the page', async () => {
    const node = mount({ variant: 'thumbs' });
    node.removeAttribute('publishable-key');
    await node.send({ type: 'thumbs', thumbs_up: true });
    expect(node.state).toBe('failed');
    expect(calls).toHaveLength(0);
  });

  it('stars: a radio group whose choice follows the arrow keys, Home and End, sent with Enter or a click', async () => {
    const node = mount({ variant: 'stars' });
    const group = $(node, '[role=radiogroup]');
    expect(group.getAttribute('aria-label')).toContain('1 to 5');
    expect(node.shadowRoot!.getElementById(group.getAttribute('aria-describedby')!)?.textContent).toContain('Enter sends');
    const radios = () => $$(node, '[role=radio]');
    const key = (k: string) => (node.shadowRoot!.activeElement as HTMLElement).dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true, cancelable: true }));
    const checked = () => radios().map((s) => s.getAttribute('aria-checked') === 'true');
    expect(radios().map((s) => s.getAttribute('aria-label'))).toEqual(['1 star', '2 stars', '3 stars', '4 stars', '5 stars']);
    expect(radios().map((s) => s.getAttribute('tabindex'))).toEqual(['0', '-1', '-1', '-1', '-1']);
    expect(checked()).toEqual([false, false, false, false, false]);
    radios()[0]!.focus();
    // [key, the star checked and focused after it]
    const steps: [string, number][] = [['ArrowRight', 2], ['ArrowDown', 3], ['ArrowLeft', 2], ['ArrowUp', 1], ['ArrowUp', 5], ['ArrowRight', 1], ['End', 5], ['Home', 1], ['ArrowRight', 2], ['ArrowRight', 3], ['ArrowRight', 4]];
    for (const [k, star] of steps) {
      expect(key(k), k).toBe(false); // handled: the page does not scroll
      expect(checked().indexOf(true) + 1, `${k} → ${star}`).toBe(star);
      expect(radios()[star - 1]!.getAttribute('tabindex')).toBe('0');
      expect(node.shadowRoot!.activeElement).toBe(radios()[star - 1]);
    }
    expect(calls).toHaveLength(0); // moving the choice sends nothing
    expect(radios().map((s) => s.classList.contains('lit'))).toEqual([true, true, true, true, false]);
    (node.shadowRoot!.activeElement as HTMLElement).click(); // what Enter or Space does on a button
    await settled(node);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.body).toMatchObject({ type: 'stars', stars: 4 });
    expect(checked()).toEqual([false, false, false, true, false]);
    expect(radios().every((s) => (s as HTMLButtonElement).disabled)).toBe(true);
  });

  it('stars: after a failed send the keys move the choice again, and Enter sends what is shown', async () => {
    const node = mount({ variant: 'stars' });
    answers = [400];
    $$(node, '[role=radio]')[3]!.click();
    await settled(node);
    expect(node.state).toBe('failed');
    const radios = () => $$(node, '[role=radio]');
    expect(radios()[3]!.getAttribute('aria-checked')).toBe('true');
    radios()[3]!.focus();
    for (const k of ['ArrowRight', 'Home', 'ArrowRight']) (node.shadowRoot!.activeElement as HTMLElement).dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true, cancelable: true }));
    expect(radios().map((r) => r.getAttribute('aria-checked') === 'true')).toEqual([false, true, false, false, false]);
    expect(node.shadowRoot!.activeElement).toBe(radios()[1]);
    // A browser shortcut is left to the browser.
    const alt = new KeyboardEvent('keydown', { key: 'ArrowLeft', altKey: true, bubbles: true, cancelable: true });
    expect(radios()[1]!.dispatchEvent(alt)).toBe(true);
    expect(radios()[1]!.getAttribute('aria-checked')).toBe('true');
    (node.shadowRoot!.activeElement as HTMLElement).click();
    await settled(node);
    expect(calls.at(-1)!.body).toMatchObject({ type: 'stars', stars: 2 });
  });

  it('full: the taxonomy as labelled checkboxes, a comment and a corrected answer', async () => {
    const node = mount({ variant: 'full' });
    const open = $(node, 'button');
    expect(open.getAttribute('aria-expanded')).toBe('false');
    open.click();
    expect($(node, 'button').getAttribute('aria-expanded')).toBe('true');
    expect(node.shadowRoot!.getElementById($(node, 'button').getAttribute('aria-controls')!)).toBe($(node, 'form'));
    const boxes = $$(node, 'input[type=checkbox]') as HTMLInputElement[];
    expect(boxes.map((b) => b.value)).toEqual(Object.keys(ERROR_CATEGORIES));
    boxes.find((b) => b.value === 'outdated_information')!.checked = true;
    boxes.find((b) => b.value === 'incomplete')!.checked = true;
    ($(node, 'textarea[name=comment]') as HTMLTextAreaElement).value = ' prices are from 2023 ';
    ($(node, 'textarea[name=correction]') as HTMLTextAreaElement).value = 'The 2026 price is 12 €.';
    ($(node, 'form') as HTMLFormElement).requestSubmit();
    await settled(node);
    expect(calls[0]!.body).toMatchObject({ type: 'full', categories: ['incomplete', 'outdated_information'], comment: 'prices are from 2023', correction: 'The 2026 price is 12 €.' });
    expect($(node, 'form')).toBeNull(); // sent: the form closes
  });

  it('records the response with the feedback when it knows the question and answer', async () => {
    const node = mount({ variant: 'thumbs', 'model-id': 'support-bot' });
    node.query = 'Is it open on Sunday?';
    node.response = 'Yes, 10–16.';
    $$(node, 'button')[0]!.click();
    await settled(node);
    expect(calls[0]!.url).toBe('https://caliber.example/api/analytics/response-quality/response');
    expect(calls[0]!.body).toMatchObject({ response_id: 'r-1', model_id: 'support-bot', query: 'Is it open on Sunday?', response: 'Yes, 10–16.', feedback: { type: 'thumbs', thumbs_up: true } });
  });

  it('falls back to thumbs for an unknown variant', () => {
    const node = mount({ variant: 'emoji' });
    expect(node.variant).toBe('thumbs');
    expect($$(node, 'button')).toHaveLength(2);
  });
});
