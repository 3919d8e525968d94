import { createElement, useEffect, useRef } from 'react';
import type { FeedbackState, Variant } from './element.ts';
import './index.ts';

export interface CaliberFeedbackProps {
  responseId: string;
  /** A publishable key (clbp_…) allowed for this page's origin. */
  publishableKey: string;
  variant?: Variant;
  modelId?: string;
  /** The question and answer: with modelId, the response is recorded with the feedback. */
  query?: string;
  response?: string;
  /** The Caliber gateway, e.g. https://caliber.example.com (a bundled app has no script origin to fall back on). */
  endpoint: string;
  onStateChange?: (state: FeedbackState, detail: string) => void;
  className?: string;
}

/** `<caliber-feedback>` for React: props in, state changes out. */
export function CaliberFeedback(props: CaliberFeedbackProps) {
  const ref = useRef<HTMLElement & { query?: string; response?: string }>(null);
  const { onStateChange } = props;
  useEffect(() => {
    const node = ref.current;
    if (!node) return;
    node.query = props.query;
    node.response = props.response;
  }, [props.query, props.response]);
  useEffect(() => {
    const node = ref.current;
    if (!node || !onStateChange) return;
    const listener = (e: Event) => {
      const { state, detail } = (e as CustomEvent<{ state: FeedbackState; detail: string }>).detail;
      onStateChange(state, detail);
    };
    node.addEventListener('caliber-feedback', listener);
    return () => node.removeEventListener('caliber-feedback', listener);
  }, [onStateChange]);
  return createElement('caliber-feedback', {
    ref,
    // A new answer is a new element: its state never carries over.
    key: props.responseId,
    'response-id': props.responseId,
    'publishable-key': props.publishableKey,
    variant: props.variant ?? 'thumbs',
    'model-id': props.modelId,
    endpoint: props.endpoint,
    class: props.className,
  });
}
