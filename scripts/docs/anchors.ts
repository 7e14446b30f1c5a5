// Where a Markdown link's `#anchor` lands on GitHub. GitHub names each heading by its rendered text:
// lower-cased, every character that is not a letter, a mark, a digit, a connector (`_`), a space or
// a hyphen dropped, each space turned into a hyphen; a name already taken in the file gets -1, -2
// (github-slugger, which GitHub's renderer follows). Headings inside fenced code are not headings
// (markdown.ts says what a fence is).
import { fencedBlocks } from './markdown.ts';

/** The anchor GitHub gives a heading whose Markdown source is `heading` (the text after the #s). */
export function headingSlug(heading: string): string {
  const rendered = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link or image shows its text
    .replace(/<[^>]+>/g, ''); // inline HTML shows none of its tags
  return rendered
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor the file's headings give, repeats numbered as GitHub numbers them. */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const { text } of headings(markdown)) {
    const slug = headingSlug(text);
    const times = seen.get(slug);
    seen.set(slug, (times ?? -1) + 1);
    anchors.add(times === undefined ? slug : `${slug}-${times + 1}`);
  }
  return anchors;
}

export type AnchorLink = { line: number; target: string; anchor: string };

/** Each `](target#anchor)` and `](#anchor)` outside fenced code; links to other sites left out. */
export function anchorLinks(markdown: string): AnchorLink[] {
  const links: AnchorLink[] = [];
  for (const { line, content: text } of fencedBlocks(markdown).outside) {
    for (const match of text.matchAll(/\]\(([^)\s#]*)#([^)\s]+)\)/g)) {
      const target = match[1] as string;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      links.push({ line, target, anchor: match[2] as string });
    }
  }
  return links;
}

function headings(markdown: string): { line: number; text: string }[] {
  return fencedBlocks(markdown).outside.flatMap(({ line, content: text }) => {
    const match = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(text);
    return match ? [{ line, text: match[1] as string }] : [];
  });
}
