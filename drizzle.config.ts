import { defineConfig } from 'drizzle-kit';

// Every lib's tables; `npm run db:generate` writes the next migration into drizzle/.
export default defineConfig({
  dialect: 'postgresql',
  schema: ['./libs/platform/src/schema.ts', './libs/*/src/schema.ts'],
  out: './drizzle',
  dbCredentials: { url: process.env.DATABASE_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/caliber' },
});
