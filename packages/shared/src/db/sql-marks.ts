// Statement texts composed at module load from constant parts only. A template says `/*NAME*/`
// where a part goes (a column list, ASC or DESC, a filter or a CTE two statements share); fillMark
// puts in that part's constant text and refuses a template whose marks are not there the expected
// number of times, so a typo fails when the module loads, not when the statement first runs. Values never come here: they are $n
// parameters, and each template is still plain text the SQL-text lint (no `${}`) reads.

/** `template` with `text` in place of each `/*mark*\/`, which must occur exactly `times` times. */
export function fillMark(template: string, mark: string, text: string, times = 1): string {
  const marker = `/*${mark}*/`;
  const found = template.split(marker).length - 1;
  if (found !== times) throw new Error(`SQL template must say ${marker} ${times} time(s), says it ${found}`);
  return template.replaceAll(marker, () => text);
}
