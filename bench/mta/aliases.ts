// The recipients of the edge benchmark, the same in every server: BENCH_ALIASES (100,000) aliases
// userNNNNNN@bench.test, each forwarding to userNNNNNN@inbox.test, and one address none of them
// knows for the reject path.
export const ALIAS_DOMAIN = 'bench.test';
export const ALIAS_COUNT = Number(process.env.BENCH_ALIASES ?? 100_000);

export function aliasLocalPart(index: number): string {
  return `user${String(index).padStart(6, '0')}`;
}

/** smtp-source sends every message to one recipient: an alias from the middle of the table. */
export const FIXED_RECIPIENT = `${aliasLocalPart(Math.floor(ALIAS_COUNT / 2))}@${ALIAS_DOMAIN}`;

export const UNKNOWN_RECIPIENT = `nosuchuser@${ALIAS_DOMAIN}`;

/** A random alias, for the Node load client. */
export function randomRecipient(): string {
  return `${aliasLocalPart(Math.floor(Math.random() * ALIAS_COUNT))}@${ALIAS_DOMAIN}`;
}

/** Every alias as "address target" lines (Postfix's virtual table) or addresses only (Haraka's list). */
export function aliasLines(withTarget: boolean): string {
  const lines: string[] = [];
  for (let index = 0; index < ALIAS_COUNT; index++) {
    const local = aliasLocalPart(index);
    lines.push(withTarget ? `${local}@${ALIAS_DOMAIN} ${local}@inbox.test` : `${local}@${ALIAS_DOMAIN}`);
  }
  return `${lines.join('\n')}\n`;
}
