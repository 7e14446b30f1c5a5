import net from 'node:net';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { explainStartupFailure } from './startup-failure.ts';

describe('explainStartupFailure', () => {
  const servers: net.Server[] = [];
  afterAll(() => {
    for (const server of servers) server.close();
  });

  it('names the address of a port already in use, from the real error', async () => {
    const first = net.createServer();
    servers.push(first);
    await new Promise<void>((resolve) => first.listen(0, '127.0.0.1', resolve));
    const { port } = first.address() as net.AddressInfo;
    const second = net.createServer();
    const error = await new Promise<Error>((resolve) => {
      second.once('error', resolve);
      second.listen(port, '127.0.0.1');
    });
    const explained = explainStartupFailure(error);
    expect(explained?.what).toBe(`cannot listen on 127.0.0.1:${port}`);
    expect(explained?.todo).toMatch(/stop that process/);
  });

  it('names an unreachable database, from the real error', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as net.AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const client = new pg.Client({ connectionString: `postgres://u:p@127.0.0.1:${port}/db` });
    const error = await client.connect().then(
      () => null,
      (e: unknown) => e,
    );
    expect(explainStartupFailure(error)?.what).toBe(`cannot reach 127.0.0.1:${port}`);
  });

  it('explains a refused login and leaves a bug alone', () => {
    expect(explainStartupFailure(Object.assign(new Error('password authentication failed for user "x"'), { code: '28P01' }))?.what).toBe(
      'PostgreSQL refused the login',
    );
    expect(explainStartupFailure(new TypeError('undefined is not a function'))).toBeNull();
  });
});
