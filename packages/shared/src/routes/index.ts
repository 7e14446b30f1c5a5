export {
  deleteRoute,
  lookupRoute,
  type NewRoute,
  ROUTE_COLUMNS,
  RouteNotFoundError,
  type RouteRecord,
  setRoute,
  unopenableRouteCredentials,
} from './manage-routes.ts';
export { openRoutePassword, SealedRouteAuthError, sealRoutePassword } from './route-credentials.ts';
export {
  chooseRoute,
  describeRouteRelay,
  ROUTE_TLS_POLICIES,
  type RouteAuth,
  RouteInputError,
  type RouteRelay,
  type RouteRule,
  type RouteTlsPolicy,
  routeAuth,
  routeCandidates,
  routeDomain,
  routeRelay,
  routeRule,
  routeTls,
  type SealedRouteAuth,
} from './route-rules.ts';
