// A real DNS server for the direct-to-MX tests: dnsmasq in a container, every record given on its
// command line (--mx-host, --host-record, --txt-record), authoritative for .test and nothing else
// (--local=/test/: any other name under .test is NXDOMAIN, nothing is forwarded). Its UDP port is
// published on the host, where the engine under test runs (MAIL_DNS_SERVERS). It can be paused
// (docker pause: queries go unanswered, a DNS timeout) and resumed.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GenericContainer, type StartedTestContainer, Wait } from 'testcontainers';
import { labels } from './containers.ts';
import { pauseContainer, unpauseContainer } from './docker-pause.ts';
import { images } from './images.ts';

const run = promisify(execFile);

export interface DnsRecords {
  /** [domain, exchange, preference]; exchange "." is a null MX (RFC 7505). */
  mx?: Array<[string, string, number]>;
  /** [name, ...addresses]: A and AAAA records. */
  hosts?: Array<[string, ...string[]]>;
  /** [name, text]: one string (dnsmasq splits a text at commas into several). */
  txt?: Array<[string, string]>;
}

export interface DnsServer {
  /** ip:port, for MAIL_DNS_SERVERS. */
  server: string;
  container: StartedTestContainer;
  /** Freezes the server: queries reach it and are never answered. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  close(): Promise<void>;
}

export function dnsmasqArguments(records: DnsRecords): string[] {
  return [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--local=/test/',
    '--user=root',
    '--log-facility=-',
    ...(records.mx ?? []).map(([domain, exchange, preference]) => `--mx-host=${domain},${exchange},${preference}`),
    ...(records.hosts ?? []).map(([name, ...addresses]) => `--host-record=${[name, ...addresses].join(',')}`),
    // No shell: quotes would reach dnsmasq, and the record, as they are.
    ...(records.txt ?? []).map(([name, text]) => `--txt-record=${name},${text}`),
  ];
}

export async function startDnsmasq(records: DnsRecords): Promise<DnsServer> {
  const container = await new GenericContainer(images.dnsmasq)
    .withLabels(labels)
    .withEntrypoint(['dnsmasq'])
    .withCommand(dnsmasqArguments(records))
    .withExposedPorts('53/udp')
    .withWaitStrategy(Wait.forLogMessage(/started, version/))
    .withStartupTimeout(60_000)
    .start();
  // The engine runs on this host; the published port answers on every host address.
  const host = container.getHost() === 'localhost' ? '127.0.0.1' : container.getHost();
  const id = container.getId();
  return {
    server: `${host}:${container.getMappedPort(53, 'udp')}`,
    container,
    pause: () => pauseContainer(id),
    resume: () => unpauseContainer(id),
    close: async () => {
      await run('docker', ['unpause', id]).catch(() => {});
      await container.stop({ remove: true });
    },
  };
}
