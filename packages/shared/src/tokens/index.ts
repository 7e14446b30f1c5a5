export {
  API_SCOPES,
  type ApiScope,
  grantsScope,
  hashApiToken,
  isApiScope,
  looksLikeApiToken,
  mintApiToken,
  TOKEN_PREFIX,
} from './api-token.ts';
export {
  type ApiTokenRecord,
  ApiTokenInputError,
  authenticateApiToken,
  createApiToken,
  listApiTokens,
  revokeApiToken,
} from './manage-tokens.ts';
