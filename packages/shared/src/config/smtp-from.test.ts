import { describe, expect, it } from 'vitest';
import { loadConfig } from './load-config.ts';

const minimal = { MAIL_POSTGRES_PRIMARY_DSN: 'postgres://u:p@127.0.0.1:5432/postern', MAIL_SMTP_MODE: 'stub' };

describe('MAIL_SMTP_FROM', () => {
  it('is read by the address parser every boundary uses, and kept as written', () => {
    expect(loadConfig(minimal, 'core').smtp.from).toBe('postern@localhost.localdomain');
    expect(loadConfig({ ...minimal, MAIL_SMTP_FROM: 'Bounces@Bücher.example' }, 'core').smtp.from).toBe('Bounces@Bücher.example');
  });

  it('refuses what the parser refuses, naming the problem', () => {
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_FROM: 'postern@example.test/x' }, 'core')).toThrow(/MAIL_SMTP_FROM[\s\S]*U\+002F/);
    expect(() => loadConfig({ ...minimal, MAIL_SMTP_FROM: `postern@${'a'.repeat(64)}.test` }, 'core')).toThrow(/64 octets/);
  });
});
