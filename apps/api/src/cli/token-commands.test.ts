import { describe, expect, it } from 'vitest';
import { parseCreateArgs, parseTokenCommand, tokenCommand, UsageError } from './token-commands.ts';

describe('postern token create arguments', () => {
  it('takes repeated and comma-separated scopes, and --flag=value', () => {
    expect(parseCreateArgs(['--name', 'ops', '--scope', 'admin'])).toEqual({ name: 'ops', scopes: ['admin'] });
    expect(parseCreateArgs(['--name=svc', '--scope', 'send,deliveries:read', '--scope=queue:read'])).toEqual({
      name: 'svc',
      scopes: ['send', 'deliveries:read', 'queue:read'],
    });
  });

  it('says what is missing or unknown', () => {
    expect(() => parseCreateArgs(['--scope', 'admin'])).toThrow(/--name is required/);
    expect(() => parseCreateArgs(['--name', 'x'])).toThrow(/--scope/);
    expect(() => parseCreateArgs(['--name'])).toThrow(UsageError);
    expect(() => parseCreateArgs(['--name', 'x', '--scope', 'admin', '--force'])).toThrow(/unknown argument --force/);
  });

  it('takes one --producer, the source the token will send as', () => {
    expect(parseCreateArgs(['--name', 'billing-2', '--scope', 'send', '--producer', 'billing'])).toEqual({
      name: 'billing-2',
      scopes: ['send'],
      producer: 'billing',
    });
    expect(parseCreateArgs(['--name=b', '--scope=send', '--producer=billing'])).toMatchObject({ producer: 'billing' });
    expect(() => parseCreateArgs(['--name', 'b', '--scope', 'send', '--producer'])).toThrow(/--producer needs a value/);
    expect(() => parseCreateArgs(['--name', 'b', '--scope', 'send', '--producer', 'a', '--producer', 'b'])).toThrow(/once/);
  });
});

describe('postern token commands', () => {
  it('knows create, revoke, list and help', () => {
    expect(parseTokenCommand(['revoke', 'ops'])).toEqual({ action: 'revoke', name: 'ops' });
    expect(parseTokenCommand(['list'])).toEqual({ action: 'list' });
    for (const argv of [['--help'], ['-h'], ['create', '--help'], ['revoke', '-h'], ['list', '--help']]) {
      expect(parseTokenCommand(argv), argv.join(' ')).toEqual({ action: 'help' });
    }
    expect(() => parseTokenCommand([])).toThrow(/token needs a command/);
    expect(() => parseTokenCommand(['rotate'])).toThrow(/unknown token command "rotate"/);
    expect(() => parseTokenCommand(['--all'])).toThrow(/unknown argument --all/);
    expect(() => parseTokenCommand(['revoke'])).toThrow(/exactly one token name/);
    expect(() => parseTokenCommand(['revoke', 'a', 'b'])).toThrow(/exactly one token name/);
    expect(() => parseTokenCommand(['list', 'extra'])).toThrow(/unexpected argument "extra"/);
  });

  it('exits 0 with the usage on stdout for help and 2 with it on stderr for a usage error, opening no database', async () => {
    const run = async (argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await tokenCommand(argv, { out: (line) => out.push(line), err: (line) => err.push(line) }, () => {
        throw new Error('the database was opened');
      });
      return { code, out: out.join('\n'), err: err.join('\n') };
    };
    expect(await run(['create', '--help'])).toMatchObject({ code: 0, out: expect.stringContaining('postern token create --name NAME'), err: '' });
    expect(await run(['create', '--name', 'x', '--scope', 'send', '--force'])).toMatchObject({
      code: 2,
      out: '',
      err: expect.stringMatching(/^postern token: unknown argument --force\nusage:/),
    });
  });
});
