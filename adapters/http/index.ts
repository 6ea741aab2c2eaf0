// The web adapter's public surface for bin/.
export {
  WebServer,
  type RouteHandler,
  type WebSocketHandler,
  type WebSocketInfo,
} from './server.ts';
export { defaultWebOptions, type WebOptions } from './options.ts';
export { installBasicRoutes, WS_PATH, BOSH_PATH } from './routes.ts';
export { installAdminRoutes, type AdminOptions, type AdminStats } from './admin.ts';
export { installChatPage } from './pages.ts';
export { installUploadRoutes, UPLOAD_PATH } from './upload.ts';
