// @vitest-environment happy-dom
import { act, createElement } from 'react';
import { createRoot } from 'react-dom/client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CaliberFeedback } from './react.ts';
import type { CaliberFeedbackElement } from './element.ts';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

afterEach(() => {
  vi.unstubAllGlobals();
  document.body.innerHTML = '';
});

describe('<CaliberFeedback> (React)', () => {
  it('renders the element with its attributes and properties, and reports state changes', async () => {
    const bodies: any[] = [];
    vi.stubGlobal('fetch', async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(String(init.body)));
      return new Response('{}', { status: 201 });
    });
    const states: string[] = [];
    const container = document.createElement('div');
    document.body.append(container);
    const root = createRoot(container);
    await act(async () => {
      root.render(
        createElement(CaliberFeedback, {
          responseId: 'r-9',
          publishableKey: 'clbp_react',
          variant: 'thumbs',
          modelId: 'bot',
          query: 'Q?',
          response: 'A.',
          endpoint: 'https://caliber.example',
          onStateChange: (s) => states.push(s),
        }),
      );
    });
    const node = container.querySelector('caliber-feedback') as CaliberFeedbackElement;
    expect(node.getAttribute('response-id')).toBe('r-9');
    expect(node.getAttribute('publishable-key')).toBe('clbp_react');
    expect(node.query).toBe('Q?');
    await act(async () => {
      (node.shadowRoot!.querySelector('button') as HTMLButtonElement).click();
    });
    await vi.waitFor(() => expect(states).toEqual(['sending', 'sent']));
    expect(bodies[0]).toMatchObject({ response_id: 'r-9', model_id: 'bot', query: 'Q?', response: 'A.', feedback: { type: 'thumbs', thumbs_up: true } });
    await act(async () => root.unmount());
  });
});
