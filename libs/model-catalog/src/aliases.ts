import { readFileSync } from 'node:fs';
import type { AliasTable } from './matcher.ts';

/** The alias table shipped with Caliber (`aliases.json`: data, reviewed like code). */
export function loadAliases(): AliasTable {
  const file = JSON.parse(readFileSync(new URL('./aliases.json', import.meta.url), 'utf8')) as { aliases: AliasTable };
  return file.aliases;
}
