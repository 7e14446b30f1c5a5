// What the engines' own metrics say about a cell, for the table's notes: leases reclaimed (each an
// outcome_unknown attempt and a possible re-send), supervised loop restarts and watchdog stalls.
import type { Engine } from '../../../apps/core/src/engine.ts';
import { metricsText } from '../../core/helpers/engine.ts';

/** Sum of every sample of a metric, whatever its labels. */
export function metricSum(text: string, name: string): number {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

export async function engineFacts(engines: Engine[]): Promise<{ reclaimed: number; restarts: number; stalls: number; text: string }> {
  const texts = await Promise.all(engines.map((engine) => metricsText(engine)));
  const sum = (name: string) => texts.reduce((total, text) => total + metricSum(text, name), 0);
  const facts = {
    reclaimed: sum('mail_attempt_leases_reclaimed_total'),
    restarts: sum('mail_loop_restarts_total'),
    stalls: sum('mail_loop_stalls_total'),
  };
  return { ...facts, text: `engine: ${facts.reclaimed} leases reclaimed, ${facts.restarts} loop restarts, ${facts.stalls} stalls` };
}

/** The facts as a line of the table's notes, read when the account is taken. */
export function engineNote(engines: Engine[], prefix = ''): () => Promise<string> {
  return async () => `${prefix}${(await engineFacts(engines)).text}`;
}
