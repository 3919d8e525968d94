import { describe, expect, it } from 'vitest';
import { redactUrl } from './logger.ts';
import { parseClusterUrl } from './redis.ts';

describe('parseClusterUrl', () => {
  it.each<[string, ReturnType<typeof parseClusterUrl>]>([
    ['redis-cluster://h1:7000,h2:7001', { nodes: [{ host: 'h1', port: 7000 }, { host: 'h2', port: 7001 }], username: undefined, password: undefined, tls: false }],
    ['rediss-cluster://:p%40ss@h1:7000/', { nodes: [{ host: 'h1', port: 7000 }], username: undefined, password: 'p@ss', tls: true }],
    ['redis-cluster://app:secret@10.0.0.1:7000,[::1]:7001', { nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '::1', port: 7001 }], username: 'app', password: 'secret', tls: false }],
    ['redis-cluster://h1', { nodes: [{ host: 'h1', port: 6379 }], username: undefined, password: undefined, tls: false }],
    ['redis-cluster://h1:99999', undefined],
    ['redis-cluster://', undefined],
    ['redis://h1:6379', undefined],
  ])('%s', (url, expected) => expect(parseClusterUrl(url)).toEqual(expected));
});

describe('redactUrl', () => {
  it.each([
    ['redis://:secret@h:6379', 'redis://:***@h:6379'],
    ['redis-cluster://app:secret@h1:7000,h2:7001', 'redis-cluster://app:***@h1:7000,h2:7001'],
    ['redis-cluster://h1:7000,h2:7001', 'redis-cluster://h1:7000,h2:7001'],
  ])('%s', (url, expected) => expect(redactUrl(url)).toBe(expected));
});
