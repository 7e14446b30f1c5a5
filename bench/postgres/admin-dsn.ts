// The PostgreSQL server the benches make their throwaway databases on: BENCH_POSTGRES_ADMIN_DSN,
// by default the machine's own at 127.0.0.1:5432 as user postgres (trust).
export const ADMIN_DSN = process.env.BENCH_POSTGRES_ADMIN_DSN ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The DSN of database `name` on that server. */
export function databaseDsn(name: string): string {
  return Object.assign(new URL(ADMIN_DSN), { pathname: `/${name}` }).toString();
}
