// Headings of this repository's own docs, with the anchors GitHub gave them, and the links the
// check must read or leave alone.
import { describe, expect, it } from 'vitest';
import { anchorLinks, headingAnchors, headingSlug } from './anchors.ts';

describe('headingSlug', () => {
  it('names headings as GitHub does', () => {
    expect(headingSlug('`-s 1`, step by step (`bench/mta/step-latency.ts`)')).toBe('-s-1-step-by-step-benchmtastep-latencyts');
    expect(headingSlug('Comparing two builds (`--baseline`, `--tracing on`)')).toBe('comparing-two-builds---baseline---tracing-on');
    expect(headingSlug('Several edge processes (`MAIL_MTA_PROCESSES`)')).toBe('several-edge-processes-mail_mta_processes');
    expect(headingSlug("Enqueue-to-send latency against the machine's load")).toBe('enqueue-to-send-latency-against-the-machines-load');
    expect(headingSlug('AMD EPYC with PTI, 29 November 01:49, and what one session at a time costs the edge')).toBe(
      'amd-epyc-with-pti-29-november-0149-and-what-one-session-at-a-time-costs-the-edge',
    );
  });

  it('keeps letters beyond ASCII and drops the rest of the punctuation', () => {
    expect(headingSlug('Größe: 25 MiB — und „mehr“?')).toBe('größe-25-mib--und-mehr');
    expect(headingSlug('**Bold** and [a link](other.md#x)')).toBe('bold-and-a-link');
  });
});

describe('headingAnchors', () => {
  it('numbers repeated headings and skips fenced code', () => {
    const doc = ['# Runs', '## Figures', '```sh', '# Figures', '```', '### Figures', '~~~', '## Not a heading', '~~~'].join('\n');
    expect([...headingAnchors(doc)].sort()).toEqual(['figures', 'figures-1', 'runs']);
  });
});

describe('anchorLinks', () => {
  it('reads links into the file and into others, not into other sites or fenced code', () => {
    const doc = [
      'See [below](#where-the-goals-stand) and [the runs](performance-runs.md#one-full-run),',
      'not [RFC 5321](https://www.rfc-editor.org/rfc/rfc5321#section-4.5.3.1.8) nor [a file](mta.md).',
      '```md',
      '[inside a fence](#nowhere)',
      '```',
    ].join('\n');
    expect(anchorLinks(doc)).toEqual([
      { line: 1, target: '', anchor: 'where-the-goals-stand' },
      { line: 1, target: 'performance-runs.md', anchor: 'one-full-run' },
    ]);
  });
});
