export { deleteRoute, lookupRoute, type NewRoute, ROUTE_COLUMNS, RouteNotFoundError, type RouteRecord, setRoute } from './manage-routes.ts';
export {
  chooseRoute,
  describeRouteRelay,
  ROUTE_TLS_POLICIES,
  RouteInputError,
  type RouteRelay,
  type RouteRule,
  type RouteTlsPolicy,
  routeCandidates,
  routeDomain,
  routeRelay,
  routeRule,
  routeTls,
} from './route-rules.ts';
