import { describe, expect, it } from 'vitest';
import { fencedBlocks } from './markdown.ts';

describe('fencedBlocks', () => {
  it('reads backtick and tilde fences, indented ones in a list item, and a longer closing fence', () => {
    const doc = [
      'prose 1',
      '```sh',
      'npm start',
      '```',
      '1. a step:',
      '   ```graphql title',
      '   { workers { loop } }',
      '   ```',
      '~~~',
      '``` not closed by backticks',
      '~~~~',
      'prose 12',
    ].join('\n');
    const { blocks, outside } = fencedBlocks(doc);
    expect(blocks).toEqual([
      { info: 'sh', line: 3, lines: ['npm start'] },
      { info: 'graphql', line: 7, lines: ['   { workers { loop } }'] },
      { info: '', line: 10, lines: ['``` not closed by backticks'] },
    ]);
    expect(outside).toEqual([
      { line: 1, content: 'prose 1' },
      { line: 5, content: '1. a step:' },
      { line: 12, content: 'prose 12' },
    ]);
  });

  it('takes backticks followed by more backticks on the line for inline code, not a fence', () => {
    const doc = ['  ```` ```graphql ```` block', '# a heading'].join('\n');
    expect(fencedBlocks(doc)).toEqual({
      blocks: [],
      outside: [
        { line: 1, content: '  ```` ```graphql ```` block' },
        { line: 2, content: '# a heading' },
      ],
    });
  });

  it('does not close a fence with a shorter one or one with an info string', () => {
    const doc = ['````md', '```', '```sh', '````'].join('\n');
    expect(fencedBlocks(doc).blocks).toEqual([{ info: 'md', line: 2, lines: ['```', '```sh'] }]);
  });
});
