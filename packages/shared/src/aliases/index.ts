export { type AliasNode, findAliasCycle } from './alias-cycles.ts';
export { ALIAS_KINDS, type AliasKind, aliasDescription, aliasDomain, aliasKind, aliasLocalPart, aliasTargets, isAliasKind, MAX_ALIAS_TARGETS } from './alias-input.ts';
export { AliasConflictError, AliasCycleError, AliasInputError, DomainNotFoundError } from './errors.ts';
export {
  type Alias,
  type AliasRef,
  type CreateAliasInput,
  createAlias,
  createDomain,
  type Domain,
  deleteAlias,
  deleteDomain,
  getAlias,
  setAliasEnabled,
  setAliasTargets,
  setDomainEnabled,
} from './manage-aliases.ts';
export { type Queryable, type RecipientResolution, resolveRecipient, resolveRecipients } from './resolve-recipient.ts';
