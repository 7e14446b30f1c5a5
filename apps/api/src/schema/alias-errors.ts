// The shared alias code's errors, as this API's typed results.
import { AliasConflictError, AliasCycleError, AliasInputError, DomainNotFoundError } from '@postern/shared';
import { ConflictError, ValidationError } from './errors.ts';

function fieldOf(message: string): string {
  if (message.startsWith('domain:')) return 'domain';
  if (message.startsWith('local part:')) return 'localPart';
  if (message.startsWith('target:') || message.includes('target')) return 'targets';
  if (message.startsWith('kind')) return 'kind';
  if (message.startsWith('description:')) return 'description';
  return 'input';
}

export async function withAliasErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof AliasCycleError) throw new ValidationError('targets', 'ALIAS_LOOP', error.message);
    if (error instanceof AliasInputError) {
      const field = fieldOf(error.message);
      // "targets: ..." is about the list (too many), not one address in it.
      const code = field === 'kind' || field === 'input' || field === 'description' || error.message.startsWith('targets:') ? 'INVALID_INPUT' : 'INVALID_ADDRESS';
      throw new ValidationError(field, code, error.message);
    }
    if (error instanceof DomainNotFoundError) throw new ValidationError('domain', 'UNKNOWN_DOMAIN', error.message);
    if (error instanceof AliasConflictError) throw new ConflictError(error.message);
    throw error;
  }
}
