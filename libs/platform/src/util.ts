// Map.groupBy arrives in Node 21; we support Node 20.
export function groupBy<T, K>(items: Iterable<T>, key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** Resolves after `ms`, or at once when the signal aborts. For backoff loops, never for test sync. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export type Issue = { path: PropertyKey[]; message: string; issues?: readonly Issue[] };

/**
 * One line naming the first few zod issues, for error messages and failed-job reasons. A record key
 * that fails its schema is reported with the key's own message, not zod's generic "Invalid key".
 */
export function summarizeIssues(issues: readonly Issue[]): string {
  const describe = (i: Issue) => {
    const inner = i.issues?.length ? i.issues.map((n) => n.message).join('; ') : i.message;
    return i.path.length ? `${i.path.map(String).join('.')}: ${inner}` : inner;
  };
  const shown = issues.slice(0, 3).map(describe);
  const more = issues.length > 3 ? ` (and ${issues.length - 3} more)` : '';
  return `${shown.join('; ')}${more}`;
}
