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
});
