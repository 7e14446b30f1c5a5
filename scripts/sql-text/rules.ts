// The rule behind "no SQL built by string interpolation" (CONTRIBUTING.md), on the syntax tree of
// one file. Every SQL text in production code is a constant string; values go in as $n
// parameters. Refused:
//   - a template literal with a `${...}` substitution, and
//   - a `+` or `+=` concatenation with any operand that is not a string literal,
// when it is SQL: its literal text has a keyword (SELECT, INSERT, UPDATE, DELETE, WITH; upper
// case, as every statement here is written, so prose like `With a filter` is not SQL) at the start
// of a line or of the text, or it is the first argument of a `.query(` call, the `text` of a query
// config ({ text: ... }), or the value given to a `*_SQL` name.
// A statement may leave a `/*MARK*/` for a constant fragment (a shared column list, ASC or DESC)
// that is put in once, when its module loads (fillMark in packages/shared/src/db/sql-marks.ts):
// constant text into constant text, by a call this rule does not look into, so no code path can
// splice a value into SQL.
import type { Node, SourceFile } from 'typescript/unstable/ast';
import {
  isAsExpression,
  isBinaryExpression,
  isCallExpression,
  isIdentifier,
  isNonNullExpression,
  isNoSubstitutionTemplateLiteral,
  isParenthesizedExpression,
  isPropertyAccessExpression,
  isPropertyAssignment,
  isPropertyDeclaration,
  isSatisfiesExpression,
  isStringLiteral,
  isTemplateExpression,
  isVariableDeclaration,
  SyntaxKind,
} from 'typescript/unstable/ast';

export interface SqlInterpolation {
  /** 1-based line of the first substitution or non-literal operand. */
  line: number;
  /** That line, trimmed. */
  excerpt: string;
}

const SQL_KEYWORD = /(?:^|\n)[ \t]*(?:SELECT|INSERT|UPDATE|DELETE|WITH)\b/;
const SQL_NAME = /^[A-Z0-9_]*_SQL$/;

function isConcatenation(node: Node): boolean {
  return isBinaryExpression(node) && (node.operatorToken.kind === SyntaxKind.PlusToken || node.operatorToken.kind === SyntaxKind.PlusEqualsToken);
}

/** The operands of a concatenation, `a + b + c` (parsed as `(a + b) + c`) flattened. */
function operands(node: Node): Node[] {
  if (isParenthesizedExpression(node)) return operands(node.expression);
  if (isBinaryExpression(node) && isConcatenation(node)) return [...operands(node.left), ...operands(node.right)];
  return [node];
}

function nameText(node: Node | undefined): string | undefined {
  if (!node) return undefined;
  if (isIdentifier(node) || isStringLiteral(node)) return node.text;
  if (isPropertyAccessExpression(node)) return node.name.text;
  return undefined;
}

/** Whether the value of `node` is used as SQL: passed to .query(, a query config's text, a *_SQL name. */
function inSqlPosition(node: Node): boolean {
  let value = node;
  let parent = node.parent;
  while (isParenthesizedExpression(parent) || isAsExpression(parent) || isSatisfiesExpression(parent) || isNonNullExpression(parent)) {
    value = parent;
    parent = parent.parent;
  }
  if (isCallExpression(parent)) {
    return parent.arguments[0] === value && isPropertyAccessExpression(parent.expression) && parent.expression.name.text === 'query';
  }
  if (isPropertyAssignment(parent) && parent.initializer === value) {
    const name = nameText(parent.name);
    return name === 'text' || SQL_NAME.test(name ?? '');
  }
  if ((isVariableDeclaration(parent) || isPropertyDeclaration(parent)) && parent.initializer === value) return SQL_NAME.test(nameText(parent.name) ?? '');
  if (isBinaryExpression(parent) && parent.right === value && parent.operatorToken.kind === SyntaxKind.EqualsToken) {
    return SQL_NAME.test(nameText(parent.left) ?? '');
  }
  return false;
}

function at(sourceFile: SourceFile, position: number): SqlInterpolation {
  const { line } = sourceFile.getLineAndCharacterOfPosition(position);
  return { line: line + 1, excerpt: (sourceFile.text.split('\n')[line] ?? '').trim() };
}

function templateProblem(sourceFile: SourceFile, node: Node): SqlInterpolation | null {
  if (!isTemplateExpression(node)) return null;
  const text = [node.head.text, ...node.templateSpans.map((span) => span.literal.text)].join(' ');
  if (!SQL_KEYWORD.test(text) && !inSqlPosition(node)) return null;
  // The head ends with `${`: the first substitution starts two characters before its end.
  return at(sourceFile, node.head.end - 2);
}

function concatenationProblem(sourceFile: SourceFile, node: Node): SqlInterpolation | null {
  if (!isBinaryExpression(node) || !isConcatenation(node)) return null;
  // Only the outermost `+` of a chain, parenthesized parts included; `+=` counts its target.
  let parent = node.parent;
  while (isParenthesizedExpression(parent)) parent = parent.parent;
  if (isConcatenation(parent)) return null;
  const parts = operands(node);
  const literalText = parts.filter((part) => isStringLiteral(part) || isNoSubstitutionTemplateLiteral(part)).map((part) => (part as { text: string }).text);
  const variable = parts.find((part) => !isStringLiteral(part) && !isNoSubstitutionTemplateLiteral(part));
  if (!variable) return null;
  if (!literalText.some((text) => SQL_KEYWORD.test(text)) && !inSqlPosition(node) && !SQL_NAME.test(nameText(node.left) ?? '')) return null;
  return at(sourceFile, variable.getStart(sourceFile));
}

/** Every SQL text in `sourceFile` that is not constant, in source order. */
export function findSqlInterpolations(sourceFile: SourceFile): SqlInterpolation[] {
  const found: SqlInterpolation[] = [];
  const visit = (node: Node): void => {
    const problem = templateProblem(sourceFile, node) ?? concatenationProblem(sourceFile, node);
    if (problem) found.push(problem);
    node.forEachChild(visit);
  };
  visit(sourceFile);
  return found;
}
