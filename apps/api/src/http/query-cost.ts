// The query cost limit, checked before execution: graphql-armor's cost-limit formula (every object
// field 2, every leaf 1, a level deeper weighs 1.5 times more, a named fragment counted where it is
// spread), with one difference that made the limit mean what it says: a list's rows are counted as
// the rows the server serves. graphql-armor multiplied a connection's subtree by a literal
// `first`/`last` only: `first: 150` (served as 100 rows) was refused as too costly, while the same
// query with `first: $n` — or with no `first` at all, served as 20 rows — counted one row, so a
// query refused with its page size written in passed with the page size in a variable.
//
// Here a field that takes `first`/`last` (a connection) is multiplied by what it will return:
//   - a literal: that many, at most the page maximum (at least 1: 0 and negatives are refused or
//     return nothing, and must not make a subtree free);
//   - a variable: the page maximum, whatever the value (validation results are cached per
//     document, so the cost cannot depend on a request's variables);
//   - neither: the default page size.
// Nested lists that are not connections (attempts, DKIM verdicts) count one row, as before.
import {
  type ASTNode,
  type ASTVisitor,
  type FieldNode,
  GraphQLError,
  type GraphQLNamedType,
  getNamedType,
  isInterfaceType,
  isObjectType,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
  type ValueNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';

export interface QueryCostOptions {
  maxCost: number;
  /** The rows a connection returns without `first`/`last`, and at most. */
  defaultPageSize: number;
  maxPageSize: number;
}

const OBJECT_COST = 2;
const SCALAR_COST = 1;
const DEPTH_COST_FACTOR = 1.5;

/** The rows one `first`/`last` argument value asks for, as the server will serve them. */
function servedRows(value: ValueNode, options: QueryCostOptions): number {
  if (value.kind === Kind.VARIABLE) return options.maxPageSize;
  if (value.kind === Kind.INT) return Math.min(Math.max(Number.parseInt(value.value, 10), 1), options.maxPageSize);
  // null (or anything validation refuses anyway): the default page.
  return options.defaultPageSize;
}

/** The rows a field returns: a connection's page (by its arguments), else 1. */
function rowsOf(field: FieldNode, takesPageSize: boolean, options: QueryCostOptions): number {
  if (!takesPageSize) return 1;
  const sizes = (field.arguments ?? [])
    .filter((argument) => argument.name.value === 'first' || argument.name.value === 'last')
    .map((argument) => servedRows(argument.value, options));
  return sizes.length === 0 ? options.defaultPageSize : Math.max(...sizes);
}

export function queryCost(context: ValidationContext, selectionSet: SelectionSetNode, parent: GraphQLNamedType | null, options: QueryCostOptions): number {
  // A named fragment costs the same wherever it is spread (its type condition gives its type):
  // computed once, so fragments spreading fragments twice over cannot make the count exponential.
  // One spread inside itself (refused by validation, NoFragmentCycles, which does not stop this
  // rule) counts as a leaf so that the count ends.
  const fragmentCosts = new Map<string, number>();

  const selections = (set: SelectionSetNode, type: GraphQLNamedType | null, depth: number): number => {
    const factor = depth > 0 ? DEPTH_COST_FACTOR : 1;
    let cost = 0;
    for (const selection of set.selections) cost += factor * selectionCost(selection, type, depth);
    return cost;
  };

  const selectionCost = (selection: SelectionSetNode['selections'][number], type: GraphQLNamedType | null, depth: number): number => {
    if (selection.kind === Kind.FIELD) {
      if (selection.name.value === '__schema') return 0;
      if (!selection.selectionSet) return SCALAR_COST;
      const definition = type && (isObjectType(type) || isInterfaceType(type)) ? type.getFields()[selection.name.value] : undefined;
      const takesPageSize = definition?.args.some((argument) => argument.name === 'first' || argument.name === 'last') ?? false;
      const child = definition ? getNamedType(definition.type) : null;
      return (OBJECT_COST + selections(selection.selectionSet, child, depth + 1)) * rowsOf(selection, takesPageSize, options);
    }
    if (selection.kind === Kind.INLINE_FRAGMENT) {
      const condition = selection.typeCondition ? (context.getSchema().getType(selection.typeCondition.name.value) ?? null) : type;
      return OBJECT_COST + selections(selection.selectionSet, condition, depth + 1);
    }
    const name = selection.name.value;
    const known = fragmentCosts.get(name);
    if (known !== undefined) return SCALAR_COST + DEPTH_COST_FACTOR * known;
    const fragment = context.getFragment(name);
    if (!fragment) return SCALAR_COST;
    fragmentCosts.set(name, 0);
    const condition = context.getSchema().getType(fragment.typeCondition.name.value) ?? null;
    const cost = OBJECT_COST + selections(fragment.selectionSet, condition, depth + 1);
    fragmentCosts.set(name, cost);
    return SCALAR_COST + DEPTH_COST_FACTOR * cost;
  };

  return selections(selectionSet, parent, 0);
}

function costRule(options: QueryCostOptions) {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(operation) {
      const root = context.getSchema().getRootType(operation.operation) ?? null;
      const cost = queryCost(context, operation.selectionSet, root, options);
      if (cost > options.maxCost) {
        context.reportError(new GraphQLError(`Syntax Error: Query Cost limit of ${options.maxCost} exceeded, found ${cost}.`, { nodes: [operation as ASTNode] }));
      }
      return false;
    },
  });
}

export function useQueryCost(options: QueryCostOptions): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(costRule(options));
    },
  };
}
