import { pino, type Logger } from 'pino';

export type { Logger };

/** Paths pino blanks out wherever they appear in a log line, so keys and secrets never reach logs. */
const REDACT_PATHS = [
  'authorization',
  'cookie',
  '*.authorization',
  '*.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  'api_key',
  '*.api_key',
  'apiKey',
  '*.apiKey',
  'password',
  '*.password',
  'secret',
  '*.secret',
];

export function createLogger(options: { level: string; name: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      name: options.name,
      level: options.level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}

/** Connection strings may carry a password; this is the form that may be logged or shown. */
export function redactUrl(url: string): string {
  // A cluster URL lists several hosts, which URL cannot parse.
  const cluster = /^(rediss?-cluster:\/\/)(?:([^:@/]*)(?::[^@/]*)?@)?(.*)$/.exec(url);
  if (cluster) return `${cluster[1]}${cluster[2] !== undefined ? `${cluster[2]}:***@` : ''}${cluster[3]}`;
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}
