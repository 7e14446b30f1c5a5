import { describe, expect, it } from 'vitest';
import { graphqlIn, sqlIn } from './documented-code.ts';

describe('code taken out of the docs', () => {
  it('takes JSON request bodies anywhere, over several lines, and ```graphql blocks whole', () => {
    const doc = [
      "1. Queue: `gql '{\"query\":\"{ queueStats { oldestDueAgeMs } }\"}'`.",
      '```sh',
      `gql '{"query":"query($id: ID!) { delivery(id: $id) { id } }",`,
      `      "variables":{"id":"<uuid>"}}'`,
      'gql() { curl -s "$POSTERN" -d "$1"; }',
      '```',
      '```graphql',
      '{ workers { loop } }',
      '```',
      'The `{"query":null}` body is refused.',
    ].join('\n');
    expect(graphqlIn('d.md', doc)).toEqual([
      { file: 'd.md', line: 1, form: 'request', text: '{"query":"{ queueStats { oldestDueAgeMs } }"}' },
      {
        file: 'd.md',
        line: 3,
        form: 'request',
        text: '{"query":"query($id: ID!) { delivery(id: $id) { id } }",\n      "variables":{"id":"<uuid>"}}',
      },
      { file: 'd.md', line: 8, form: 'document', text: '{ workers { loop } }' },
    ]);
  });

  it('takes ```sql statements and inline spans ending with `;`, not SQL named in prose', () => {
    const doc = [
      'Look: `SELECT site FROM mail.site_backoffs LIMIT 1;`, never `VACUUM FULL` or `LOCK TABLE`.',
      '```sql',
      '-- the oldest',
      'SELECT id',
      '  FROM mail.deliveries',
      ' ORDER BY created_at LIMIT 1;',
      '',
      'VACUUM ANALYZE mail.deliveries;',
      '```',
      '```sh',
      "psql -c 'SELECT 1;'   # `SELECT 2;` in a shell block is shell, not an inline span",
      '```',
    ].join('\n');
    expect(sqlIn('d.md', doc)).toEqual([
      { file: 'd.md', line: 1, text: 'SELECT site FROM mail.site_backoffs LIMIT 1' },
      { file: 'd.md', line: 4, text: 'SELECT id\n  FROM mail.deliveries\n ORDER BY created_at LIMIT 1' },
      { file: 'd.md', line: 8, text: 'VACUUM ANALYZE mail.deliveries' },
    ]);
  });
});
