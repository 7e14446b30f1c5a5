// The one Pothos builder. Plugins, in order: scope-auth first (a field's scopes are checked before
// anything else runs), then errors (typed error objects in results), then relay (connections).

import { type ApiScope, grantsScope } from '@postern/shared';
import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import type { ApiContext } from '../context.ts';
import { forbiddenError } from './errors.ts';

export const builder = new SchemaBuilder<{
  Context: ApiContext;
  AuthScopes: { scope: ApiScope };
  DefaultFieldNullability: false;
  DefaultEdgesNullability: { list: false; items: false };
  DefaultNodeNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date | string };
    JSON: { Input: unknown; Output: unknown };
  };
}>({
  plugins: [ScopeAuthPlugin, ErrorsPlugin, RelayPlugin],
  defaultFieldNullability: false,
  scopeAuth: {
    authScopes: (context) => ({ scope: (required: ApiScope) => grantsScope(context.principal.scopes, required) }),
    unauthorizedError: (_parent, _context, info, result) => forbiddenError(info, result.failure),
  },
  errors: { defaultTypes: [] },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    edgesFieldOptions: { nullable: { list: false, items: false } },
    nodeFieldOptions: { nullable: false },
  },
});

builder.queryType({});
builder.mutationType({});
