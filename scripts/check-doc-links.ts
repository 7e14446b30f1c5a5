// Every link to a heading in the docs (`](#anchor)`, `](other.md#anchor)`) must land on one, as
// GitHub names headings (docs/anchors.ts): a heading renamed or a section moved to another file
// otherwise leaves links that open the top of the page. Checked as part of the lint step, over
// README.md and docs/**/*.md.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { anchorLinks, headingAnchors } from './docs/anchors.ts';
import { operatorDocs, REPOSITORY_ROOT } from './docs/markdown.ts';

const root = REPOSITORY_ROOT;
// `node scripts/check-doc-links.ts FILE...` checks the links of just those files.
const files =
  process.argv.length > 2
    ? process.argv.slice(2).map((file) => ({ file: path.resolve(file), text: readFileSync(file, 'utf8') }))
    : operatorDocs().map(({ file, text }) => ({ file: path.join(root, file), text }));

/** Each file read once: the ones checked, and the ones their links point into. */
const textByFile = new Map(files.map(({ file, text }) => [file, text]));
const anchorsByFile = new Map<string, Set<string> | null>();
function anchorsOf(file: string): Set<string> | null {
  if (!anchorsByFile.has(file)) {
    const text = textByFile.get(file) ?? (existsSync(file) ? readFileSync(file, 'utf8') : null);
    anchorsByFile.set(file, text === null ? null : headingAnchors(text));
  }
  return anchorsByFile.get(file) ?? null;
}

const problems: string[] = [];
let checked = 0;
for (const { file, text } of files) {
  for (const link of anchorLinks(text)) {
    checked++;
    const target = link.target === '' ? file : path.resolve(path.dirname(file), decodeURI(link.target));
    const anchors = anchorsOf(target);
    const where = `${path.relative(root, file)}:${link.line}`;
    if (anchors === null) problems.push(`${where}: no file ${link.target}`);
    else if (!anchors.has(decodeURIComponent(link.anchor))) problems.push(`${where}: no heading #${link.anchor} in ${link.target || 'this file'}`);
  }
}

if (problems.length > 0) {
  console.error(`links to headings that are not there:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
} else {
  console.log(`doc links ok: ${checked} links to headings in ${files.length} files`);
}
