#!/usr/bin/env node
// Runs the TypeScript MCP server through tsx's loader, so an MCP client can start it by path.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
