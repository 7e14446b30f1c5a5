// Which dead letters a filter selects, written once for the two statements that select by it: the
// API's list of dead letters and requeue-dead-letters.ts. The predicate reads mail.dead_letters as
// `dd` joined to mail.deliveries as `dl`, with the filter as $1..$5 (deadLetterFilterParams); a
// statement says `/*DEAD_LETTER_FILTER*/` where it goes (withDeadLetterFilter, at module load).
import { fillMark } from '../db/sql-marks.ts';

/** Every field null: not filtered on. */
export interface DeadLetterFilterValues {
  /** true: only requeued ones; false: only those still waiting. */
  requeued: boolean | null;
  /** An address in its normal form (what recipients are stored as). */
  recipient: string | null;
  source: string | null;
  /** Inclusive. */
  createdAfter: Date | null;
  /** Exclusive. */
  createdBefore: Date | null;
}

export const ANY_DEAD_LETTER: DeadLetterFilterValues = { requeued: null, recipient: null, source: null, createdAfter: null, createdBefore: null };

const DEAD_LETTER_FILTER = `($1::boolean IS NULL OR (dd.requeued_at IS NOT NULL) = $1::boolean)
   AND ($2::text IS NULL OR dl.recipient = lower($2::text))
   AND ($3::text IS NULL OR dl.source = $3::text)
   AND ($4::timestamptz IS NULL OR dd.created_at >= $4::timestamptz)
   AND ($5::timestamptz IS NULL OR dd.created_at < $5::timestamptz)`;

/** `template` with the filter predicate where it says `/*DEAD_LETTER_FILTER*\/` (once). */
export function withDeadLetterFilter(template: string): string {
  return fillMark(template, 'DEAD_LETTER_FILTER', DEAD_LETTER_FILTER);
}

/** The filter as the parameters $1..$5 of a statement made with withDeadLetterFilter. */
export function deadLetterFilterParams(filter: DeadLetterFilterValues): unknown[] {
  return [filter.requeued, filter.recipient, filter.source, filter.createdAfter, filter.createdBefore];
}
