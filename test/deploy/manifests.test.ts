import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from 'kubernetes-models/batch/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { parseEnv, platformEnvSchema, QUEUE_NAMES } from '../../libs/platform/src/index.ts';
import { ROOT } from '../harness.ts';

// The Kubernetes manifests checked against the Kubernetes API's own schemas (kubernetes-models,
// generated from its OpenAPI document), then for what matters to Caliber.
const DIR = join(ROOT, 'deploy/kubernetes');
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
};

type Doc = { apiVersion: string; kind: string; metadata: { name: string }; spec?: any; data?: Record<string, string>; stringData?: Record<string, string> };
const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
const docs: (Doc & { file: string })[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return { ...(d.toJSON() as Doc), file };
  }),
);
const deployments = docs.filter((d) => d.kind === 'Deployment');
const workloads = docs.filter((d) => d.kind === 'Deployment' || d.kind === 'Job');
const container = (d: Doc) => d.spec.template.spec.containers[0];
const config = docs.find((d) => d.kind === 'ConfigMap')!.data!;

describe('deploy/kubernetes', () => {
  it('is valid against the Kubernetes schemas, and kustomization lists every file but the templates', () => {
    for (const doc of docs) {
      const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
      expect(Model, `${doc.file}: ${doc.apiVersion} ${doc.kind}`).toBeDefined();
      const { file: _file, ...manifest } = doc;
      expect(() => new Model!(manifest).validate(), `${doc.file}: ${doc.kind} ${doc.metadata.name}`).not.toThrow();
    }
    const kustomization = parse(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    expect(kustomization.resources.sort()).toEqual(files.filter((f) => f !== 'secret.example.yaml' && f !== 'migrate-job.yaml').sort());
  });

  it('runs every queue in exactly one worker group, with commands that exist', () => {
    const queues = deployments
      .filter((d) => d.metadata.name.startsWith('caliber-worker-'))
      .flatMap((d) => {
        const cmd = container(d).command as string[];
        return cmd[cmd.indexOf('--queues') + 1]!.split(',');
      });
    expect([...queues].sort()).toEqual([...QUEUE_NAMES].sort());
    for (const w of workloads) {
      const entry = (container(w).command as string[]).find((a) => a.endsWith('.ts'))!;
      expect(existsSync(join(ROOT, entry)), `${w.metadata.name}: ${entry}`).toBe(true);
      expect(container(w).image).toBe('caliber');
      expect(container(w).envFrom).toEqual([{ configMapRef: { name: 'caliber-config' } }, { secretRef: { name: 'caliber-secrets' } }]);
    }
  });

  it('probes the gateway with /healthz and /readyz, and serves it on its port', () => {
    const gateway = deployments.find((d) => d.metadata.name === 'caliber-gateway')!;
    const c = container(gateway);
    expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    expect(c.ports).toContainEqual({ name: 'http', containerPort: Number(config.PORT) });
    const service = docs.find((d) => d.kind === 'Service')!;
    expect(service.spec.selector).toEqual(gateway.spec.template.metadata.labels);
    expect(service.spec.ports[0].targetPort).toBe('http');
  });

  it('gives every process longer to stop than the shutdown timeout and the longest job lock', () => {
    const longest = Math.max(Number(config.SHUTDOWN_TIMEOUT_MS), Number(config.WORKER_LOCK_DURATION_MS)) / 1000;
    for (const d of deployments) expect(d.spec.template.spec.terminationGracePeriodSeconds, d.metadata.name).toBeGreaterThan(longest);
    for (const d of deployments.filter((x) => x.metadata.name.startsWith('caliber-worker-'))) {
      expect(d.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(Number(config.SHUTDOWN_TIMEOUT_MS) / 1000 + Number(config.WORKER_LOCK_DURATION_MS) / 1000);
    }
  });

  it('configures only settings Caliber knows, valid as given, with secrets kept in the Secret', () => {
    const secret = docs.find((d) => d.file === 'secret.example.yaml')!;
    const env = { ...config, ...secret.stringData };
    // The platform's own schema accepts the ConfigMap with the Secret's keys.
    expect(() => parseEnv(platformEnvSchema, env)).not.toThrow();
    const known = new Set([...Object.keys(platformEnvSchema.shape), 'NODE_ENV', 'CALIBRATE_HEADS', 'MODELS_DIR', 'FINE_TUNE_DATA_DIR', 'AA_API_KEY', 'FINE_TUNE_API_KEY', 'NOTIFY_WEBHOOK_SECRET']);
    for (const key of Object.keys(env)) expect(known.has(key), key).toBe(true);
    for (const key of Object.keys(config)) expect(key, 'a secret in the ConfigMap').not.toMatch(/KEY|SECRET|PASSWORD|DATABASE_URL|REDIS_URL/);
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, { command?: string[]; ports?: string[]; container_name?: string; stop_grace_period?: string }> };
  it('scales the workers (no fixed names or host ports) and runs every queue', () => {
    const workers = Object.entries(compose.services).filter(([name]) => name.startsWith('worker-'));
    for (const [name, w] of workers) {
      expect(w.container_name, name).toBeUndefined();
      expect(w.ports, name).toBeUndefined();
      expect(Number.parseInt(w.stop_grace_period ?? '0', 10), name).toBeGreaterThan(30);
    }
    const queues = workers.flatMap(([, w]) => w.command![w.command!.indexOf('--queues') + 1]!.split(','));
    expect([...queues].sort()).toEqual([...QUEUE_NAMES].sort());
  });
});
