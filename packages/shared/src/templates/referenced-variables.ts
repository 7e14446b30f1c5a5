// The top-level variables a template refers to, found by walking its Handlebars AST, so that
// template.json's declared variables are checked against what the template really uses at startup.
// Inside {{#each}} and {{#with}} the context changes to the item, so names there are the item's
// fields, not command variables: only the block's own argument counts.
const CONTEXT_CHANGING_BLOCKS = new Set(['each', 'with']);
const BUILTIN_HELPERS = new Set(['if', 'unless', 'each', 'with', 'lookup', 'log']);

type Node = hbs.AST.Node;

function pathName(node: Node): string | null {
  if (node.type !== 'PathExpression') return null;
  const pathNode = node as hbs.AST.PathExpression;
  if (pathNode.data || pathNode.depth > 0 || pathNode.parts.length === 0) return null;
  return pathNode.parts[0] ?? null;
}

function visitExpression(node: Node, found: Set<string>): void {
  const name = pathName(node);
  if (name) {
    found.add(name);
    return;
  }
  if (node.type === 'SubExpression') visitCall(node as hbs.AST.SubExpression, found);
}

function visitCall(call: { path: Node; params: Node[]; hash?: hbs.AST.Hash }, found: Set<string>): void {
  const callee = pathName(call.path);
  const isHelperCall = call.params.length > 0 || (call.hash?.pairs.length ?? 0) > 0;
  if (callee && !(isHelperCall || BUILTIN_HELPERS.has(callee))) found.add(callee);
  for (const param of call.params) visitExpression(param, found);
  for (const pair of call.hash?.pairs ?? []) visitExpression(pair.value, found);
}

function visitProgram(program: hbs.AST.Program | undefined, found: Set<string>): void {
  for (const statement of program?.body ?? []) {
    if (statement.type === 'MustacheStatement') visitCall(statement as hbs.AST.MustacheStatement, found);
    else if (statement.type === 'BlockStatement') {
      const block = statement as hbs.AST.BlockStatement;
      visitCall(block, found);
      const helper = pathName(block.path);
      if (!helper || !CONTEXT_CHANGING_BLOCKS.has(helper)) visitProgram(block.program, found);
      visitProgram(block.inverse, found);
    }
  }
}

export function referencedVariables(ast: hbs.AST.Program): Set<string> {
  const found = new Set<string>();
  visitProgram(ast, found);
  return found;
}
