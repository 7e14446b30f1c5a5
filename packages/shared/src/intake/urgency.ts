// Which deliveries are urgent: those of the categories in MAIL_URGENT_CATEGORIES (by default
// `authsession`, the login codes and password resets someone waits for on a screen). An urgent
// delivery gets priority 0 and is claimed before every other due delivery (lifecycle/
// claim-deliveries.ts), so a backlog of bulk mail does not hold it back; everything else, and
// every delivery the edge accepts or a bounce, has priority 1.
import type { Parsed } from '../config/parse-values.ts';
import { CATEGORY } from './command-fields.ts';

export const URGENT_PRIORITY = 0;
export const NORMAL_PRIORITY = 1;

/** MAIL_URGENT_CATEGORIES when it is not set. */
export const DEFAULT_URGENT_CATEGORIES: readonly string[] = ['authsession'];

export function priorityOf(category: string | null, urgentCategories: readonly string[] = DEFAULT_URGENT_CATEGORIES): number {
  return category !== null && urgentCategories.includes(category) ? URGENT_PRIORITY : NORMAL_PRIORITY;
}

/** MAIL_URGENT_CATEGORIES: "authsession,alerts", or "none" (an empty variable counts as unset, like
 *  every other). A name no command could carry is refused rather than matching nothing in silence. */
export function parseCategoryList(text: string): Parsed<string[]> {
  if (text.trim() === 'none') return { ok: true, value: [] };
  const names = text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  const wrong = names.find((name) => !CATEGORY.test(name));
  if (wrong !== undefined) return { ok: false, problem: `"${wrong}" is not a category (lower-case letters, digits, _ and -, at most 64)` };
  return { ok: true, value: [...new Set(names)] };
}
