export {
  API_SCOPES,
  type ApiScope,
  defaultProducer,
  grantsScope,
  hashApiToken,
  isApiScope,
  looksLikeApiToken,
  mintApiToken,
  producerProblem,
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
