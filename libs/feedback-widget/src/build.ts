import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ENTRY = fileURLToPath(new URL('./index.ts', import.meta.url));

/** The widget as one minified ES module (what /widget/caliber-feedback.js serves). */
export async function buildWidget(): Promise<string> {
  const result = await build({ entryPoints: [ENTRY], bundle: true, format: 'esm', minify: true, write: false, target: 'es2020', platform: 'browser', legalComments: 'none' });
  return result.outputFiles[0]!.text;
}
