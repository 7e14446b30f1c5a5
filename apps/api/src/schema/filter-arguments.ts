// List filters read outside text straight into SQL parameters. A NUL or a lone surrogate there
// failed inside PostgreSQL (INTERNAL_SERVER_ERROR) and an address filter compared the raw text
// (a U-label domain never matched its stored A-label). Each filter is checked here instead:
// BAD_USER_INPUT naming the argument and the problem.
import { InvalidAddressError, isUuid, normalizeAddress, textProblem } from '@postern/shared';
import { badUserInput } from './bad-user-input.ts';

/** The normal form of an address filter (what recipients are stored as), or null for none. */
export function recipientFilter(value: string | null | undefined, argument = 'filter.recipient'): string | null {
  if (value === null || value === undefined || value === '') return null;
  try {
    return normalizeAddress(value).address;
  } catch (error) {
    if (error instanceof InvalidAddressError) throw badUserInput(`${argument}: ${error.message}`, argument);
    throw error;
  }
}

/** A free-text filter compared for equality (source, failure code), or null for none. */
export function textFilter(value: string | null | undefined, argument: string, maxChars = 200): string | null {
  if (value === null || value === undefined || value === '') return null;
  const problem = textProblem(value, maxChars);
  if (problem) throw badUserInput(`${argument} ${problem}`, argument);
  return value;
}

/** An id filter (a UUID, compared as one), or null for none. */
export function uuidFilter(value: string | number | null | undefined, argument: string): string | null {
  if (value === null || value === undefined || value === '') return null;
  const text = String(value);
  if (!isUuid(text)) throw badUserInput(`${argument}: "${text.slice(0, 64)}" is not an id of this list (a UUID)`, argument);
  return text;
}
