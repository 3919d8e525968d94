// The gateway's side: serving the bundle (Node only; index.ts is the browser entry).
export { buildWidget } from './build.ts';
export { widgetRoutes } from './routes.ts';
