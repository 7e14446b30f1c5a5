export {
  API_SCOPES,
  type ApiScope,
  defaultProducer,
  grantsScope,
  hashApiToken,
  isApiScope,
  looksLikeApiToken,
  mintApiToken,
  type ProducerScope,
  producerProblem,
  producerReach,
  TOKEN_PREFIX,
} from './api-token.ts';
export {
  ApiTokenInputError,
  type ApiTokenRecord,
  authenticateApiToken,
  createApiToken,
  listApiTokens,
  revokeApiToken,
} from './manage-tokens.ts';
