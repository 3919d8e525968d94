export { TOOL_SPECS, type ToolSpec } from './catalogue.ts';
export { buildTools, inputJsonSchema, toApiRequest, type Tool, type RouteDefinition } from './tools.ts';
export { createCaliberMcpServer, toolResult, toolsMarkdown, type CallApi, type McpPrincipal } from './server.ts';
export { gatewayCaller } from './call.ts';
export { mcpRoutes } from './http.ts';
