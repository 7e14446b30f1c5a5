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

  it('tells a server that takes only TLS from a refused login: the DSN needs sslmode, not another password', () => {
    const hostsslOnly = Object.assign(
      new Error('no pg_hba.conf entry for host "172.17.0.1", user "postern", database "postern", no encryption'),
      { code: '28000' },
    );
    expect(explainStartupFailure(hostsslOnly)).toMatchObject({
      what: 'PostgreSQL accepts only TLS connections from this host',
      todo: expect.stringMatching(/sslmode=verify-full&sslrootcert=<CA file>/),
    });
    expect(explainStartupFailure(new Error('The server does not support SSL connections'))?.what).toMatch(/does not offer TLS/);
  });

  it('names a certificate refused, and where the CA goes, wherever in the chain of causes', () => {
    const untrusted = Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    const wrapped = new Error('Redis did not answer PING within 5000 ms: self-signed certificate in certificate chain', { cause: untrusted });
    for (const error of [untrusted, wrapped]) {
      expect(explainStartupFailure(error)).toMatchObject({
        what: "the server's TLS certificate is not trusted",
        todo: expect.stringMatching(/sslrootcert=<CA file>.*MAIL_REDIS_TLS_CA.*NODE_EXTRA_CA_CERTS/),
      });
    }
    const wrongHost = Object.assign(new Error("Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list: "), {
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
    expect(explainStartupFailure(wrongHost)?.what).toBe("the server's TLS certificate is not for the host connected to");
  });

  it("names a Redis login or an ACL refused, from Redis's own reply", () => {
    const wrongPass = new Error('WRONGPASS invalid username-password pair or user is disabled.');
    expect(explainStartupFailure(new Error('Redis did not answer PING within 5000 ms', { cause: wrongPass }))?.what).toBe('Redis refused the login');
    const noPerm = new Error("NOPERM User postern-engine has no permissions to run the 'ping' command");
    expect(explainStartupFailure(noPerm)?.todo).toMatch(/A Redis user for the engines/);
  });
});
