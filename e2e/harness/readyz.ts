// A process's /readyz as an operator reads it: the status and the body that names each failing
// check and why.
import { waitFor } from './wait-for.ts';

export interface ReadyzAnswer {
  status: number;
  body: string;
}

/** GET /readyz of an in-process edge, engine or API (their `http` listener). */
export async function readyzOf(process: { http: { host: string; port: number } | null }): Promise<ReadyzAnswer> {
  if (!process.http) throw new Error('started without HTTP');
  const response = await fetch(`http://${process.http.host}:${process.http.port}/readyz`);
  return { status: response.status, body: await response.text() };
}

/** Waits until /readyz answers `status`; returns that answer. */
export async function readyzWhen(process: { http: { host: string; port: number } | null }, status: number, timeoutMs = 30_000): Promise<ReadyzAnswer> {
  return waitFor(`/readyz ${status}`, () => readyzOf(process), (answer) => answer.status === status, { timeoutMs, intervalMs: 200 });
}
