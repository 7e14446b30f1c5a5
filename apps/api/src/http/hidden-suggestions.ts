// graphql-js ends many errors with a suggestion built from the schema: `Cannot query field "x" on
// type "Query". Did you mean "y"?`, `Unknown type "Deliver". Did you mean "Delivery"?`, `... Did you
// mean the enum value "queued"?`, `... Did you mean to use an inline fragment on "SendEmailSuccess"?`.
// Answered for every typo, they let a client map the schema that turning introspection off hides.
// Where introspection is off, this plugin cuts the suggestion off each error, leaving the rest.
//
// Not @escape.tech/graphql-armor-block-field-suggestions: it rewrites validation errors only, and
// its pattern misses the enum value form (graphql-armor issue #759, closed unfixed), so a
// misspelt enum literal, and every suggestion graphql-js makes while coercing variables (during
// execution: `Variable "$f" got invalid value ...; Field "sourc" is not defined by type
// "DeliveryFilter". Did you mean "source"?`), still answered with schema names.
import { GraphQLError } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';

// graphql-js's didYouMean(): " Did you mean", an optional phrase ("the enum value", "to use an
// inline fragment on"), then one to five quoted GraphQL names joined by ", ", " or ", ", or ", then
// "?". Names are [_A-Za-z][_0-9A-Za-z]*, so a quote cannot hide inside one.
const SUGGESTION = / Did you mean (?:[a-z]+(?: [a-z]+)* )?"[_A-Za-z][_0-9A-Za-z]*"(?:(?:, |,? or )"[_A-Za-z][_0-9A-Za-z]*")*\?/g;

/** The message without graphql-js's suggestions; the same text when it has none. */
export function withoutSuggestions(message: string): string {
  return message.replace(SUGGESTION, '');
}

function hideSuggestion<E extends Error>(error: E): E | GraphQLError {
  if (!(error instanceof GraphQLError)) return error;
  const message = withoutSuggestions(error.message);
  if (message === error.message) return error;
  // A new error rather than the message changed in place: yoga caches validation results by
  // document, and the cached errors must stay as graphql-js made them.
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: error.extensions,
  });
}

export function useHiddenSuggestions(): Plugin {
  return {
    onValidate: () => ({ valid, result, setResult }) => {
      if (!valid) setResult(result.map(hideSuggestion));
    },
    onExecute: () => ({
      onExecuteDone: ({ result, setResult }) => {
        // Nothing here streams (@defer, subscriptions): a single result, or left as it is.
        if (isAsyncIterable(result) || !result.errors) return;
        setResult({ ...result, errors: result.errors.map(hideSuggestion) });
      },
    }),
  };
}
