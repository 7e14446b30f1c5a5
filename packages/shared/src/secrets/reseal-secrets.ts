// Every secret Postern keeps sealed in PostgreSQL, in one list: where it is and what its sealed
// value is bound to. `postern secrets status` counts them by the key that opens them, and
// `postern secrets reseal` seals again with MAIL_SECRETS_KEY whatever MAIL_SECRETS_KEY_PREVIOUS
// still opens — the middle step of a rotation (docs/deploy.md, "Rotating MAIL_SECRETS_KEY"). The
// API and the engine count them at start while a previous key is set, to say what is left to do.
//
// A reseal is one transaction: it locks both tables against writes (not against reads: engines go
// on signing and sending), opens every value, and writes only if every one opened. A value that
// neither key opens (the wrong previous key given, a row altered) refuses the whole reseal, names
// the value, and changes nothing — dropping the previous key then would lose it for good.
import type { Queryable } from '../aliases/resolve-recipient.ts';
import { type Pool, withTransaction } from '../db/pool.ts';
import { dkimKeyBoundTo } from '../dkim/sealed-key.ts';
import type { Logger } from '../logging/logger.ts';
import { routePasswordBoundTo } from '../routes/route-credentials.ts';
import { openSecretFrom, SealedSecretError, sealSecret } from './sealed-secret.ts';
import type { SecretsKey } from './secrets-key.ts';

interface SealedRow {
  id: string;
  /** What the operator knows it by: "s1._domainkey.example.com", "example.com". */
  label: string;
  domain: string;
  /** DKIM: the selector; route: the username. */
  name: string;
  sealed: Buffer;
}

interface SealedKind {
  /** "DKIM key", "route password". */
  kind: string;
  /** Where it is, "mail.table.column" (a sealed column's name ends in _sealed). */
  column: string;
  listSql: string;
  updateSql: string;
  boundTo(row: SealedRow): string;
}

const SEALED_KINDS: readonly SealedKind[] = [
  {
    kind: 'DKIM key',
    column: 'mail.dkim_keys.private_key_sealed',
    listSql: `SELECT id::text AS id, selector || '._domainkey.' || domain AS label, domain, selector AS name, private_key_sealed AS sealed
                FROM mail.dkim_keys WHERE private_key_sealed IS NOT NULL ORDER BY id`,
    updateSql: 'UPDATE mail.dkim_keys SET private_key_sealed = $2 WHERE id = $1::bigint',
    boundTo: (row) => dkimKeyBoundTo({ domain: row.domain, selector: row.name }),
  },
  {
    kind: 'route password',
    column: 'mail.routes.auth_password_sealed',
    listSql: `SELECT id::text AS id, domain AS label, domain, auth_username AS name, auth_password_sealed AS sealed
                FROM mail.routes WHERE auth_password_sealed IS NOT NULL ORDER BY id`,
    updateSql: 'UPDATE mail.routes SET auth_password_sealed = $2 WHERE id = $1::bigint',
    boundTo: (row) => routePasswordBoundTo(row.domain, row.name),
  },
];

/** Every column that holds a sealed value: a new one not listed here would be left behind by a
 *  rotation (e2e/api/secrets-rotation.e2e.test.ts compares it with the schema). */
export const SEALED_COLUMNS: readonly string[] = SEALED_KINDS.map((kind) => kind.column);

export interface SealedSecretsStatus {
  /** Per kind: how many MAIL_SECRETS_KEY opens, how many only MAIL_SECRETS_KEY_PREVIOUS. */
  kinds: Array<{ kind: string; current: number; previous: number }>;
  /** Values neither key opens, e.g. 'DKIM key s1._domainkey.example.com: wrong key (...)'. */
  unopenable: string[];
}

interface Examined extends SealedSecretsStatus {
  /** The values to seal again, with their plaintext (never leaves this module). */
  toReseal: Array<{ kind: SealedKind; row: SealedRow; plaintext: string }>;
}

async function examine(db: Queryable, secretsKey: SecretsKey): Promise<Examined> {
  const examined: Examined = { kinds: [], unopenable: [], toReseal: [] };
  for (const kind of SEALED_KINDS) {
    const { rows } = await db.query<SealedRow>(kind.listSql);
    const counts = { kind: kind.kind, current: 0, previous: 0 };
    for (const row of rows) {
      try {
        const opened = openSecretFrom(secretsKey, kind.boundTo(row), row.sealed);
        counts[opened.sealedWith] += 1;
        if (opened.sealedWith === 'previous') examined.toReseal.push({ kind, row, plaintext: opened.plaintext });
      } catch (error) {
        if (!(error instanceof SealedSecretError)) throw error;
        examined.unopenable.push(`${kind.kind} ${row.label}: ${error.message}`);
      }
    }
    examined.kinds.push(counts);
  }
  return examined;
}

/** How many values only MAIL_SECRETS_KEY_PREVIOUS opens: what a rotation still has to reseal. */
export function sealedWithPrevious(status: SealedSecretsStatus): number {
  return status.kinds.reduce((sum, kind) => sum + kind.previous, 0);
}

/** Which key opens each sealed value (read only). */
export async function sealedSecretsStatus(db: Queryable, secretsKey: SecretsKey): Promise<SealedSecretsStatus> {
  const { kinds, unopenable } = await examine(db, secretsKey);
  return { kinds, unopenable };
}

/** At the start of the API and the engine, while MAIL_SECRETS_KEY_PREVIOUS is set: what is left of
 *  the rotation. A key kept longer than needed is a key more that can open the database's secrets. */
export async function logSecretsRotation(db: Queryable, secretsKey: SecretsKey | null, logger: Logger): Promise<void> {
  if (secretsKey?.previous == null) return;
  const status = await sealedSecretsStatus(db, secretsKey);
  const left = sealedWithPrevious(status);
  if (left > 0) {
    logger.warn({ sealedWithPrevious: status.kinds }, `MAIL_SECRETS_KEY_PREVIOUS still opens ${left} secret(s): run postern secrets reseal, then remove it from every process`);
  } else {
    logger.warn('MAIL_SECRETS_KEY_PREVIOUS is set but nothing is sealed with it any more: remove it from every process');
  }
}

export interface ResealResult extends SealedSecretsStatus {
  /** Values sealed again with MAIL_SECRETS_KEY (0 when refused). */
  resealed: number;
  /** True when nothing was written because some value opened with neither key. */
  refused: boolean;
}

/** Thrown inside the transaction so that it rolls back; never leaves this module. */
class Refused extends Error {
  readonly status: SealedSecretsStatus;
  constructor(status: SealedSecretsStatus) {
    super('some sealed value opens with neither key');
    this.status = status;
  }
}

/** Seals again with MAIL_SECRETS_KEY every value only MAIL_SECRETS_KEY_PREVIOUS opens: all of them
 *  in one transaction, or none when any value opens with neither key. */
export async function resealSecrets(pool: Pool, secretsKey: SecretsKey): Promise<ResealResult> {
  try {
    return await withTransaction(pool, async (client) => {
      // Writes (createDkimKey, setRoute) wait for the commit; reads go on.
      await client.query('LOCK TABLE mail.dkim_keys, mail.routes IN SHARE ROW EXCLUSIVE MODE');
      const { kinds, unopenable, toReseal } = await examine(client, secretsKey);
      if (unopenable.length > 0) throw new Refused({ kinds, unopenable });
      for (const { kind, row, plaintext } of toReseal) {
        await client.query(kind.updateSql, [row.id, sealSecret(secretsKey, kind.boundTo(row), plaintext)]);
      }
      return { kinds, unopenable, resealed: toReseal.length, refused: false };
    });
  } catch (error) {
    if (error instanceof Refused) return { ...error.status, resealed: 0, refused: true };
    throw error;
  }
}
