// Errors of the alias code, typed so that callers (the GraphQL API, the CLI, tests) can map each to
// its own answer without parsing messages.

/** The caller gave something that can never be stored: a malformed domain, address or kind. */
export class AliasInputError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AliasInputError';
  }
}

/** The write would close an alias loop; `cycle` is the addresses mail would pass, back to the start. */
export class AliasCycleError extends AliasInputError {
  readonly cycle: string[];
  constructor(alias: string, cycle: string[]) {
    super(`alias loop: ${alias} would reach itself through ${cycle.join(' -> ')}; mail to it would circle until the hop limit`);
    this.name = 'AliasCycleError';
    this.cycle = cycle;
  }
}

export class DomainNotFoundError extends Error {
  readonly domain: string;
  constructor(domain: string) {
    super(`domain ${domain} does not exist`);
    this.name = 'DomainNotFoundError';
    this.domain = domain;
  }
}

/** A unique constraint said no: the domain, the alias or the catch-all already exists. */
export class AliasConflictError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AliasConflictError';
  }
}

/** PostgreSQL's unique_violation (SQLSTATE 23505). */
export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}
