// Cuts bytes at chosen offsets, the way TCP may segment them: the DATA property test and the
// raw-socket fuzzer (e2e/mta/helpers/fuzz-session.ts) both hand the edge bytes split where an
// attacker chooses, and a verdict must not depend on where that was. Offsets wrap around the
// length, so any generated number is a valid cut; duplicates and cuts at 0 are dropped.

/** The pieces of `bytes` between the cuts, in order; together they are `bytes` again. */
export function cutAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % Math.max(1, bytes.length)))].filter((p) => p > 0).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(from, point));
    from = point;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}
