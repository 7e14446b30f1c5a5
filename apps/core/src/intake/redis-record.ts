// Redis answers some commands (XINFO, CLIENT TRACKINGINFO) with a flat [name, value, name, value,
// ...] list under RESP2: read as an object by name.
export function recordOf(flat: unknown): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  const values = flat as unknown[];
  for (let i = 0; i + 1 < values.length; i += 2) record[String(values[i])] = values[i + 1];
  return record;
}
