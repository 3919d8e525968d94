import { summarizeIssues } from '@caliber/platform';
import { z } from '@hono/zod-openapi';
import { TOOL_SPECS, WAIT_PARAMETERS, type ToolSpec } from './catalogue.ts';

/** One route as `@hono/zod-openapi` registers it (the parts a tool needs). */
export interface RouteDefinition {
  method: string;
  path: string;
  summary?: string;
  description?: string;
  request?: {
    params?: z.ZodObject;
    query?: z.ZodObject;
    body?: { content?: Record<string, { schema?: z.ZodType }> };
  };
}

/** A tool ready to list and call: its input schema is built from the route's own schemas. */
export interface Tool {
  spec: ToolSpec;
  method: string;
  /** OpenAPI form, `{param}` placeholders. */
  path: string;
  description: string;
  input: z.ZodObject;
  pathKeys: string[];
  queryKeys: string[];
  bodyKeys: string[];
  readOnly: boolean;
}

/** The registry's routes (`app.openAPIRegistry.definitions`) keyed `METHOD /path`. */
export function routesByKey(definitions: readonly unknown[]): Map<string, RouteDefinition> {
  const routes = new Map<string, RouteDefinition>();
  for (const d of definitions as { type?: string; route?: RouteDefinition }[]) {
    if (d.type === 'route' && d.route) routes.set(`${d.route.method.toUpperCase()} ${d.route.path}`, d.route);
  }
  return routes;
}

/** The first object of a union (`{…} | {"items":[…]}` bodies): the one-item form. */
function singleItem(schema: z.ZodType): z.ZodType {
  const options = (schema as unknown as { options?: z.ZodType[] }).options;
  return options?.[0] ?? schema;
}

export const TENANT_ARGUMENT = 'tenant_id';

/**
 * Every tool of the catalogue, with its input schema made of the route's path, query and body
 * schemas (the same objects the route validates with). A catalogue entry naming a route the
 * gateway does not have is a programming error: it throws at start.
 */
export function buildTools(definitions: readonly unknown[], specs: ToolSpec[] = TOOL_SPECS): Tool[] {
  const routes = routesByKey(definitions);
  return specs.map((spec) => {
    const route = routes.get(spec.route);
    if (!route) throw new Error(`MCP tool ${spec.name}: the gateway has no route ${spec.route}`);
    const params = route.request?.params?.shape ?? {};
    const query = Object.fromEntries(Object.entries(route.request?.query?.shape ?? {}).filter(([k]) => !WAIT_PARAMETERS.has(k)));
    const bodySchema = route.request?.body?.content?.['application/json']?.schema;
    let body: Record<string, z.ZodType> = {};
    if (bodySchema) {
      if (spec.bodyArgument) body = { [spec.bodyArgument]: singleItem(bodySchema) };
      else if (bodySchema instanceof z.ZodObject) body = bodySchema.shape as Record<string, z.ZodType>;
      else throw new Error(`MCP tool ${spec.name}: ${spec.route} takes a body that is not one object; give it a bodyArgument`);
    }
    const parts = [Object.keys(params), Object.keys(query), Object.keys(body)].flat();
    const clash = parts.find((k, i) => parts.indexOf(k) !== i);
    if (clash) throw new Error(`MCP tool ${spec.name}: argument ${clash} is in two of the route's path, query and body`);
    const shape: Record<string, z.ZodType> = { ...params, ...query, ...body };
    if (spec.tenant) {
      shape[TENANT_ARGUMENT] = z.uuid().optional().describe('With the admin key: the tenant whose data to use (a tenant key always uses its own)');
    }
    const waits = Object.keys(route.request?.query?.shape ?? {}).some((k) => WAIT_PARAMETERS.has(k));
    const description = [route.summary, route.description, spec.note, waits ? 'The tool never waits (no wait or timeout argument): it returns at once.' : undefined]
      .filter((t): t is string => Boolean(t))
      .map((t) => (/[.!?)]$/.test(t.trim()) ? t.trim() : `${t.trim()}.`))
      .join(' ');
    return {
      spec,
      method: route.method.toUpperCase(),
      path: route.path,
      description,
      // Strict: an argument the route does not take is refused, as the schema shown says.
      input: z.object(shape).strict(),
      pathKeys: Object.keys(params),
      queryKeys: Object.keys(query),
      bodyKeys: Object.keys(body),
      readOnly: route.method.toUpperCase() === 'GET',
    };
  });
}

/** The input schema as JSON Schema, as `tools/list` shows it (what a client sends, before defaults). */
export function inputJsonSchema(tool: Tool): { type: 'object'; [k: string]: unknown } {
  const schema = z.toJSONSchema(tool.input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  return { ...schema, type: 'object' };
}

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body?: unknown;
  tenantId?: string;
}

/**
 * A tool call as the HTTP request its route takes. The route validates it (so a bad argument gets
 * the API's own 400); here only the path must be complete.
 */
export function toApiRequest(tool: Tool, args: Record<string, unknown>): ApiRequest | { error: string } {
  // Checked against the schema tools/list shows (the route checks again, with the same schemas).
  const checked = tool.input.safeParse(args);
  if (!checked.success) return { error: summarizeIssues(checked.error.issues) };
  let path = tool.path;
  for (const key of tool.pathKeys) {
    const value = args[key];
    if (value === undefined || value === null || value === '') return { error: `${key} is required` };
    // A dot segment would be resolved away and the call would reach another route.
    if (String(value) === '.' || String(value) === '..') return { error: `${key} must not be "." or ".."` };
    path = path.replace(`{${key}}`, encodeURIComponent(String(value)));
  }
  const query = new URLSearchParams();
  for (const key of tool.queryKeys) {
    const value = args[key];
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, typeof v === 'object' ? JSON.stringify(v) : String(v));
  }
  const known = new Set([...tool.pathKeys, ...tool.queryKeys, ...tool.bodyKeys, ...(tool.spec.tenant ? [TENANT_ARGUMENT] : [])]);
  const unknown = Object.keys(args).filter((k) => !known.has(k));
  if (unknown.length > 0) return { error: `unknown argument${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}` };
  let body: unknown;
  if (tool.spec.bodyArgument) body = args[tool.spec.bodyArgument];
  else if (tool.bodyKeys.length > 0) body = Object.fromEntries(tool.bodyKeys.filter((k) => args[k] !== undefined).map((k) => [k, args[k]]));
  const tenantId = tool.spec.tenant && typeof args[TENANT_ARGUMENT] === 'string' ? (args[TENANT_ARGUMENT] as string) : undefined;
  return { method: tool.method, path, query, body, tenantId };
}
