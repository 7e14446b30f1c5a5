// The arguments of one `postern` command, parsed by node:util parseArgs in strict mode: an unknown
// option, a missing value or a stray word is a usage error (exit 2), never guessed at. Every
// command takes -h/--help. parseArgs words its errors for programmers ("Option '--name <value>'
// argument missing"); the same arguments, parsed again leniently with tokens, say which one was
// wrong in the CLI's own words.
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';

/** A mistake in the command line: the CLI prints it with the usage text and exits 2. */
export class UsageError extends Error {}

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

function isParseArgsError(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS_') === true;
}

/** The first argument parseArgs refused, said as this CLI says it. */
function explain(args: readonly string[], options: ParseArgsOptionsConfig, error: Error): UsageError {
  const { tokens } = parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true });
  for (const token of tokens) {
    if (token.kind === 'positional') return new UsageError(`unexpected argument "${token.value}"`);
    if (token.kind !== 'option') continue;
    const declared = options[token.name];
    if (!declared) return new UsageError(`unknown argument ${token.rawName}`);
    if (declared.type === 'string' && token.value === undefined) return new UsageError(`${token.rawName} needs a value`);
    // Strict parseArgs refuses a separate value that looks like an option ("--producer --scope x").
    if (declared.type === 'string' && !token.inlineValue && token.value?.startsWith('-')) {
      return new UsageError(`${token.rawName} needs a value (one that starts with "-" is written ${token.rawName}=${token.value})`);
    }
    if (declared.type === 'boolean' && token.inlineValue) return new UsageError(`${token.rawName} takes no value`);
  }
  return new UsageError(error.message);
}

type Parsed<O extends ParseArgsOptionsConfig, P extends boolean> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & typeof HELP; strict: true; allowPositionals: P }>
>;

/**
 * `args` parsed against `options` (plus -h/--help), or null when help was asked for.
 * Throws UsageError for anything parseArgs refuses.
 */
export function parseCommandArgs<const O extends ParseArgsOptionsConfig, const P extends boolean = false>(
  args: readonly string[],
  options: O,
  allowPositionals?: P,
): Parsed<O, P> | null {
  const withHelp = { ...options, ...HELP };
  let parsed: Parsed<O, P>;
  try {
    parsed = parseArgs({ args: [...args], options: withHelp, strict: true, allowPositionals: allowPositionals ?? false }) as Parsed<O, P>;
  } catch (error) {
    if (isParseArgsError(error)) throw explain(args, withHelp, error);
    throw error;
  }
  return (parsed.values as { help?: boolean }).help ? null : parsed;
}
