// What yoga does with a request before GraphQL validation sees it, where its defaults answered a
// hostile request with HTTP 500 instead of a 4xx:
//   - `variables` and `extensions` in a query string (GET) or a form post were JSON.parse'd
//     unguarded: `?variables={` threw a SyntaxError nobody caught. Here they are parsed the same
//     way, and a value that is not JSON is a 400 naming the parameter.
//   - a document nested a few thousand levels deep (`{ a { a { ...`, `[[[...]]]`) overflowed the
//     parser's recursion. The parser stops after QUERY_LIMITS.maxTokens tokens (graphql-js's own
//     `maxTokens`, a syntax error naming the limit), which bounds its work and most nesting; a list
//     value can still nest one level per token, and where the stack ends depends on how warm the
//     parser is (2,000 levels overflowed a fresh process), so an overflow while parsing is a syntax
//     error too.
// Multipart requests (GraphQL uploads) are switched off where yoga is created: Postern takes no
// uploads, and yoga's multipart `map` handling threw on a map that is not a list of paths.
import { GraphQLError } from 'graphql';
import type { GraphQLParams, Plugin } from 'graphql-yoga';

function jsonParameter(search: URLSearchParams, name: 'variables' | 'extensions'): Record<string, unknown> | undefined {
  const text = search.get(name);
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new GraphQLError(`"${name}" is not valid JSON: ${(error as Error).message}`, { extensions: { code: 'BAD_REQUEST', http: { status: 400 } } });
  }
}

/** The parameters of a query string or form body, as yoga reads them (empty means absent). */
export function searchParams(search: URLSearchParams): GraphQLParams {
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
      if (request.method === 'GET') setRequestParser(() => searchParams(url.searchParams));
      else if (isFormPost(request)) setRequestParser(async (parsed) => searchParams(new URLSearchParams(await parsed.text())));
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
