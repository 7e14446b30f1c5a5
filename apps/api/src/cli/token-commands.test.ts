import { describe, expect, it } from 'vitest';
import { parseCreateArgs, UsageError } from './token-commands.ts';

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
