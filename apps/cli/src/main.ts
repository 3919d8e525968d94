import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { confidenceModule, loadConfidenceConfig } from '@caliber/confidence';
import { loadModelSelectionConfig, modelSelectionModule } from '@caliber/model-selection';
import { loadNotificationsConfig, notificationsModule } from '@caliber/notifications';
import { headCalibrationModule, importCalibrationBundle, InvalidBundleError, loadHeadCalibrationConfig, readBundleDir } from '@caliber/head-calibration';
import { loadModelCatalogConfig, modelCatalogModule } from '@caliber/model-catalog';
import { fineTuningModule, loadFineTuningConfig } from '@caliber/fine-tuning';
import { loadResponseQualityConfig, responseQualityModule } from '@caliber/response-quality';
import { ConfigError, createDatabase, loadPlatformConfig, runMigrations, type QueueName } from '@caliber/platform';
import { preflight, PreflightError } from './preflight.ts';
import { DEFAULT_WORKER_GROUPS, localApiKey, ROOT, superviseProcesses, workerGroups } from './start.ts';

const USAGE = `Usage: caliber <command>

  start                         migrate, then run the gateway and the worker processes
  migrate                       create the database if needed and apply migrations
  calibration import <dir>      install a calibration bundle (<model>/heads/<head>-calibration.json)
`;

const say = (message: string) => console.log(`[caliber] ${message}`);

async function migrate(): Promise<void> {
  const config = loadPlatformConfig({ ...process.env, NODE_ENV: process.env.NODE_ENV ?? 'development', CALIBER_API_KEY: process.env.CALIBER_API_KEY ?? 'not-needed-to-migrate' });
  const { createdDatabase } = await preflight(config);
  if (createdDatabase) say(`created database ${new URL(config.DATABASE_URL).pathname.slice(1)}`);
  await runMigrations(config.MIGRATE_DATABASE_URL ?? config.DATABASE_URL);
  say('migrations applied');
}

/** Runs every config loader and reports all their problems together. */
function loadAll<T extends unknown[]>(...loaders: { [K in keyof T]: () => T[K] }): T {
  const problems: string[] = [];
  const results = loaders.map((load) => {
    try {
      return load();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return undefined;
    }
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return results as T;
}

async function start(): Promise<number> {
  const env = { ...process.env };
  if (!env.CALIBER_API_KEY) {
    const { key, generated } = localApiKey();
    env.CALIBER_API_KEY = key;
    say(
      generated
        ? `generated an admin API key, kept in .caliber/api-key (set CALIBER_API_KEY to choose your own): ${key}`
        : 'using the admin API key in .caliber/api-key (set CALIBER_API_KEY to choose your own)',
    );
  }
  // Every setting is checked here, so a wrong value stops start-up before any process is launched.
  const [config, heads, catalog, quality, fineTuning, confidence, modelSelection, notifications] = loadAll(
    () => loadPlatformConfig(env),
    () => loadHeadCalibrationConfig(env),
    () => loadModelCatalogConfig(env),
    () => loadResponseQualityConfig(env),
    () => loadFineTuningConfig(env),
    () => loadConfidenceConfig(env),
    () => loadModelSelectionConfig(env),
    () => loadNotificationsConfig(env),
  );
  const modules = [
    headCalibrationModule(heads),
    modelCatalogModule(catalog),
    responseQualityModule(quality),
    fineTuningModule(fineTuning),
    confidenceModule(confidence),
    modelSelectionModule(modelSelection),
    notificationsModule(notifications),
  ];

  const { createdDatabase } = await preflight(config);
  if (createdDatabase) say(`created database ${new URL(config.DATABASE_URL).pathname.slice(1)}`);
  await runMigrations(config.MIGRATE_DATABASE_URL ?? config.DATABASE_URL);
  say('migrations applied');

  const withProcessors = new Set<QueueName>(modules.flatMap((m) => (m.jobs ?? []).map((j) => j.definition.queue)));
  const groups = workerGroups(env.WORKER_GROUPS || DEFAULT_WORKER_GROUPS, withProcessors);
  say(`starting gateway on :${config.PORT} and ${groups.length} worker process(es): ${groups.map((g) => g.join(',')).join(' | ')}`);
  say(`Bull Board: http://localhost:${config.PORT}/admin/queues · calibration API ${heads.CALIBRATE_HEADS ? 'enabled' : 'disabled (CALIBRATE_HEADS=false)'}`);
  return superviseProcesses({ env, groups, shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS, log: say });
}

async function importBundle(dir: string | undefined): Promise<number> {
  if (!dir) {
    console.error(USAGE);
    return 2;
  }
  const config = loadPlatformConfig({ ...process.env, CALIBER_API_KEY: process.env.CALIBER_API_KEY ?? 'not-needed-for-import' });
  const heads = loadHeadCalibrationConfig();
  const { db, close } = createDatabase(config.DATABASE_URL, { max: 2, applicationName: 'caliber-cli' });
  try {
    const installed = await importCalibrationBundle(db, heads.MODELS_DIR, await readBundleDir(dir));
    for (const i of installed) say(`installed ${i.model_name}/${i.head_name} v${i.version} → ${i.path}`);
    say(`${installed.length} reference calibration(s) installed`);
    return 0;
  } catch (err) {
    if (err instanceof InvalidBundleError) {
      console.error(`[caliber] ${err.message}:`);
      for (const p of err.problems) console.error(`  ${p.file}: ${p.message}`);
      return 2;
    }
    throw err;
  } finally {
    await close();
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // Every command sees the same settings and relative paths (MODELS_DIR, .env) as the processes
  // `start` launches, wherever it is run from; a directory argument is resolved first.
  const bundleDir = command === 'calibration' && rest[1] ? resolve(rest[1]) : undefined;
  process.chdir(ROOT);
  if (existsSync('.env')) process.loadEnvFile('.env');
  switch (command) {
    case 'start':
      return start();
    case 'migrate':
      await migrate();
      return 0;
    case 'calibration':
      if (rest[0] === 'import') return importBundle(bundleDir);
      break;
  }
  console.error(USAGE);
  return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof PreflightError) console.error(`[caliber] ${err.message}`);
    else console.error(err);
    process.exit(1);
  },
);
