export { createSrs, HASH_LENGTH, isSrsLocalPart, looksLikeSrs, MAX_AGE_DAYS, MIN_SECRET_LENGTH, type SrsCodec, type SrsDecoded } from './srs.ts';
