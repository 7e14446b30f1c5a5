// The repository's operator docs (README.md and docs/**/*.md) read line by line, as the checks of
// scripts/docs/ need them: fenced code blocks with their info word, and the lines outside them.
// One reader for the link check (anchors.ts) and the documented-code tests (documented-code.ts), so
// they agree on what is code. No markdown parser: a fence is a line of three or more backticks or
// tildes, indented or not (inside a list item), closed by a line of the same character at least as
// long with nothing after it; a backtick fence whose rest holds a backtick is inline code, not a fence.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const REPOSITORY_ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface MarkdownFile {
  /** Relative to the repository, with `/`. */
  file: string;
  text: string;
}

export interface FencedBlock {
  /** The info string's first word (`sh`, `graphql`, `sql`), or ''. */
  info: string;
  /** 1-based line of the block's first content line. */
  line: number;
  lines: string[];
}

export interface ProseLine {
  /** 1-based. */
  line: number;
  content: string;
}

/** README.md and every docs/**\/*.md, in a stable order. */
export function operatorDocs(root = REPOSITORY_ROOT): MarkdownFile[] {
  const docs = readdirSync(path.join(root, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.md'))
    .map((name) => path.posix.join('docs', name.split(path.sep).join('/')))
    .sort();
  return ['README.md', ...docs].map((file) => ({ file, text: readFileSync(path.join(root, file), 'utf8') }));
}

const OPENING_FENCE = /^\s*(`{3,}|~{3,})(.*)$/;

/** The fenced blocks of a markdown text, and every line outside them. */
export function fencedBlocks(text: string): { blocks: FencedBlock[]; outside: ProseLine[] } {
  const blocks: FencedBlock[] = [];
  const outside: ProseLine[] = [];
  let open: (FencedBlock & { fence: string }) | null = null;
  text.split('\n').forEach((content, index) => {
    const match = OPENING_FENCE.exec(content);
    const fence = match?.[1] as string | undefined;
    const rest = (match?.[2] ?? '').trim();
    if (open) {
      if (fence && fence[0] === open.fence[0] && fence.length >= open.fence.length && rest === '') {
        blocks.push({ info: open.info, line: open.line, lines: open.lines });
        open = null;
      } else open.lines.push(content);
    } else if (fence && !(fence[0] === '`' && rest.includes('`'))) {
      open = { fence, info: rest.split(/\s/)[0] as string, line: index + 2, lines: [] };
    } else outside.push({ line: index + 1, content });
  });
  return { blocks, outside };
}
