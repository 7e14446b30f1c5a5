// What yoga does with a request before GraphQL validation sees it, where its defaults answered a
// hostile request with HTTP 500 instead of a 4xx:
//   - `variables` and `extensions` in a query string (GET) or a form post were JSON.parse'd
//     unguarded: `?variables={` threw a SyntaxError nobody caught. Here they are parsed the same
//     way, and a value that is not JSON is a 400 naming the parameter.
//   - a query string or form body was percent-decoded leniently: `%FC` (Latin-1 "ü") or `%ED%A0%80`
//     (an encoded surrogate) became U+FFFD and was stored altered, where a JSON body that is not
//     UTF-8 is refused (graphql-route.ts). Here the decoded bytes must be UTF-8, or it is a 400.
//   - a request without a query (`{"query":null}`, `{}`) was answered 200 whenever the client
//     accepts application/json (curl's and fetch's */* included): yoga marks that error as one the
//     GraphQL-over-HTTP spec wants answered 200 there. The spec's own example of "Invalid
//     parameters" (a request missing its required `query`) is a 400 in every media type; so here.
//   - a document nested a few thousand levels deep (`{ a { a { ...`, `[[[...]]]`) overflowed the
//     parser's recursion. The parser stops after QUERY_LIMITS.maxTokens tokens (graphql-js's own
//     `maxTokens`, a syntax error naming the limit), which bounds its work and most nesting; a list
//     value can still nest one level per token, and where the stack ends depends on how warm the
//     parser is (2,000 levels overflowed a fresh process), so an overflow while parsing is a syntax
//     error too.
// Multipart requests (GraphQL uploads) are switched off where yoga is created: Postern takes no
// uploads, and yoga's multipart `map` handling threw on a map that is not a list of paths.
import { isUtf8 } from 'node:buffer';
import { GraphQLError } from 'graphql';
import type { GraphQLParams, Plugin } from 'graphql-yoga';

function badRequest(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_REQUEST', http: { status: 400 } } });
}

/** The bytes a query string or form body stands for: every `%XX` as its byte, the rest as UTF-8.
 *  A `%` that starts no escape stays a `%`, as URLSearchParams keeps it. */
export function percentDecodedBytes(text: string): Buffer {
  const parts: Buffer[] = [];
  let last = 0;
  for (const escapes of text.matchAll(/(?:%[0-9A-Fa-f]{2})+/g)) {
    parts.push(Buffer.from(text.slice(last, escapes.index), 'utf8'), Buffer.from(escapes[0].replaceAll('%', ''), 'hex'));
    last = escapes.index + escapes[0].length;
  }
  parts.push(Buffer.from(text.slice(last), 'utf8'));
  return Buffer.concat(parts);
}

function jsonParameter(search: URLSearchParams, name: 'variables' | 'extensions'): Record<string, unknown> | undefined {
  const text = search.get(name);
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw badRequest(`"${name}" is not valid JSON: ${(error as Error).message}`);
  }
}

/** The parameters of a query string or form body (`a=1&b=2`, not yet decoded), as yoga reads them
 *  (empty means absent); refused when its percent-encoded bytes are not UTF-8. */
export function searchParams(text: string): GraphQLParams {
  if (!isUtf8(percentDecodedBytes(text))) throw badRequest('the query string or form body is not valid UTF-8 once percent-decoded (RFC 3986 2.5): nothing was read');
  const search = new URLSearchParams(text);
  return {
    operationName: search.get('operationName') || undefined,
    query: search.get('query') || undefined,
    variables: jsonParameter(search, 'variables'),
    extensions: jsonParameter(search, 'extensions'),
  };
}

/** A form post exactly as yoga recognises one (its isContentTypeMatch), so the same requests are forms. */
function isFormPost(request: Request): boolean {
  const type = request.headers.get('content-type')?.split(',')[0] ?? '';
  return request.method === 'POST' && (type === 'application/x-www-form-urlencoded' || type.startsWith('application/x-www-form-urlencoded;'));
}

/** Replaces yoga's parsers of GET query strings and form posts (registered after them, so this
 *  one is chosen). The query string is read from the URL path the route checked (graphql-route.ts). */
export function useGuardedSearchParams(): Plugin {
  return {
    onRequestParse({ request, url, setRequestParser }) {
      if (request.method === 'GET') setRequestParser(() => searchParams(url.search));
      else if (isFormPost(request)) setRequestParser(async (parsed) => searchParams(await parsed.text()));
    },
  };
}

/** A request without a query is a 400 whatever the client accepts (yoga's own check, which runs
 *  after this one, would answer it 200 to a client accepting application/json). */
export function useRequiredQuery(): Plugin {
  return {
    onParams({ params }) {
      if (params.query === undefined || params.query === null) throw badRequest('Must provide query string.');
    },
  };
}

/** graphql-js stops parsing after `maxTokens` tokens, with a syntax error naming the limit; a
 *  document nested deeper than the parser can recurse is a syntax error saying so. */
export function useBoundedParse(maxTokens: number): Plugin {
  return {
    onParse({ parseFn, setParseFn }) {
      setParseFn((source, options) => {
        try {
          return parseFn(source, { ...options, maxTokens });
        } catch (error) {
          if (!(error instanceof RangeError)) throw error;
          throw new GraphQLError('Syntax Error: Document nested too deeply to parse.', { extensions: { code: 'GRAPHQL_PARSE_FAILED' } });
        }
      });
    },
  };
}
