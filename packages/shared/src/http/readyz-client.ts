// Asking a process's /readyz from outside it: the image's HEALTHCHECK (bin/healthcheck.ts) and
// `npm start`, which says Postern is running only once every app it started answers 200
// (scripts/start/await-apps-ready.ts). Its own export (@postern/shared/readyz-client), light like
// http-listeners.ts: the health check runs every 15 s in every container and must not load the
// package's index. node:http rather than fetch, whose client (undici) costs a probe another 0.1 s
// of CPU to load.
import http from 'node:http';
import type { ListenAddress } from '../config/parse-values.ts';

/** Where a process listening on `addr` answers /readyz from the same host: a wildcard bind is asked on loopback. */
export function readinessUrl(addr: ListenAddress): string {
  const host = addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}/readyz`;
}

/** The longest part of a body kept: /readyz's JSON names each failing check in far less. */
const BODY_KEPT = 500;

/** GET url: its status and the start of its body; rejects on a connection error, or with no answer within timeoutMs. */
export function askReadyz(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < BODY_KEPT) body += chunk;
      });
      response.on('end', () => {
        clearTimeout(timer);
        resolve({ status: response.statusCode ?? 0, body: body.slice(0, BODY_KEPT) });
      });
      response.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    // Unref'd: it never holds a process's exit up (the request keeps the process alive while it waits).
    const timer = setTimeout(() => request.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref();
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
