// `npm run build:widget`: writes the widget bundle to libs/feedback-widget/dist/ and prints its size.
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { buildWidget } from '../src/build.ts';

const code = await buildWidget();
const dir = fileURLToPath(new URL('../dist/', import.meta.url));
await mkdir(dir, { recursive: true });
await writeFile(`${dir}caliber-feedback.js`, code);
console.log(JSON.stringify({ file: 'libs/feedback-widget/dist/caliber-feedback.js', bytes: Buffer.byteLength(code), gzip_bytes: gzipSync(code).length }));
