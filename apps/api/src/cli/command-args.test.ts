import { describe, expect, it } from 'vitest';
import { parseCommandArgs, UsageError } from './command-args.ts';

const OPTIONS = { name: { type: 'string' }, scope: { type: 'string', multiple: true }, dry: { type: 'boolean' } } as const;

describe('parseCommandArgs', () => {
  it('parses strictly with node:util parseArgs', () => {
    expect(parseCommandArgs(['--name', 'a', '--scope=x', '--scope', 'y', '--dry'], OPTIONS)?.values).toEqual({ name: 'a', scope: ['x', 'y'], dry: true });
    expect(parseCommandArgs(['one'], {}, true)?.positionals).toEqual(['one']);
  });

  it('answers null for -h and --help', () => {
    expect(parseCommandArgs(['--help'], OPTIONS)).toBeNull();
    expect(parseCommandArgs(['--name', 'a', '-h'], OPTIONS)).toBeNull();
  });

  it('names the argument it refuses', () => {
    const refusal = (args: string[], allowPositionals = false) => {
      try {
        parseCommandArgs(args, OPTIONS, allowPositionals);
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError);
        return (error as Error).message;
      }
      throw new Error(`${args.join(' ')} was accepted`);
    };
    expect(refusal(['--force'])).toBe('unknown argument --force');
    expect(refusal(['--name', 'a', '-x'])).toBe('unknown argument -x');
    expect(refusal(['--name'])).toBe('--name needs a value');
    expect(refusal(['--name', '--dry'])).toBe('--name needs a value (one that starts with "-" is written --name=--dry)');
    expect(refusal(['--dry=yes'])).toBe('--dry takes no value');
    expect(refusal(['stray'])).toBe('unexpected argument "stray"');
    // A value starting with "-" is taken when written with "=".
    expect(parseCommandArgs(['--name=-a'], OPTIONS)?.values.name).toBe('-a');
  });
});
