// The top-level keys a JSON line names more than once. JSON.parse keeps one of them silently, so a
// test that parses lines cannot see a repeat; this reads the keys as written. Only what a log line
// can be is read: one object, keys and values as JSON.stringify writes them.

/** Index just past the JSON string that starts at `start` (a `"`). */
function endOfString(text: string, start: number): number {
  let at = start + 1;
  while (at < text.length && text[at] !== '"') at += text[at] === '\\' ? 2 : 1;
  return at + 1;
}

/** Every key that occurs more than once at the top level of the JSON object `line`, once each. */
export function repeatedTopLevelKeys(line: string): string[] {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  let depth = 0;
  let expectKey = false;
  let at = 0;
  while (at < line.length) {
    const char = line[at];
    if (char === '"') {
      const end = endOfString(line, at);
      if (depth === 1 && expectKey) {
        const key = JSON.parse(line.slice(at, end)) as string;
        if (seen.has(key)) repeated.add(key);
        seen.add(key);
        expectKey = false;
      }
      at = end;
      continue;
    }
    if (char === '{' || char === '[') {
      depth += 1;
      if (depth === 1) expectKey = true;
    } else if (char === '}' || char === ']') {
      depth -= 1;
    } else if (char === ',' && depth === 1) {
      expectKey = true;
    }
    at += 1;
  }
  return [...repeated];
}
