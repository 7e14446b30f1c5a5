// The recipients of the edge benchmark, the same in every server: BENCH_ALIASES (100,000) aliases
// <n>user@bench.test (n from 1), each forwarding to <n>user@inbox.test, and one address none of
// them knows for the reject path. The names are smtp-source's: with -N it sends message n to
// <n>user@bench.test, so every message of a run has its own recipient and its own bytes (without
// it the messages repeat byte for byte within a second, and Postern answers a repeat as a sender's
// retry instead of storing it).
export const ALIAS_DOMAIN = 'bench.test';
export const ALIAS_COUNT = Number(process.env.BENCH_ALIASES ?? 100_000);

export function aliasLocalPart(index: number): string {
  return `${index}user`;
}

/** What smtp-source -N numbers: message n goes to <n>user@bench.test. */
export const NUMBERED_RECIPIENT = `user@${ALIAS_DOMAIN}`;

export const UNKNOWN_RECIPIENT = `nosuchuser@${ALIAS_DOMAIN}`;

/** A random alias, for the Node load client. */
export function randomRecipient(): string {
  return `${aliasLocalPart(1 + Math.floor(Math.random() * ALIAS_COUNT))}@${ALIAS_DOMAIN}`;
}

/** Every alias as "address target" lines (Postfix's virtual table) or addresses only (Haraka's list). */
export function aliasLines(withTarget: boolean): string {
  const lines: string[] = [];
  for (let index = 1; index <= ALIAS_COUNT; index++) {
    const local = aliasLocalPart(index);
    lines.push(withTarget ? `${local}@${ALIAS_DOMAIN} ${local}@inbox.test` : `${local}@${ALIAS_DOMAIN}`);
  }
  return `${lines.join('\n')}\n`;
}
