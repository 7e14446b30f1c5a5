// mx-connect (zone-eu, by nodemailer's authors) ships no types; only what mx-relay.ts uses is
// declared, as mx-connect 2.0.0 documents it (lib/mx-connect.js).
declare module 'mx-connect' {
  import type { Socket } from 'node:net';

  /** Errors carry `category` ('dns', 'network', ...) and `temporary` where mx-connect knows. */
  export interface MxConnectError extends Error {
    code?: string;
    category?: string;
    temporary?: boolean;
    response?: string;
  }

  export interface MxConnectOptions {
    /** An address or a domain; its domain's MX hosts are connected to. */
    target: string;
    port?: number;
    /** Per host tried, in ms. */
    maxConnectTime?: number;
    localHostname?: string;
    dnsOptions?: {
      /** Every DNS lookup mx-connect makes goes here: (name, 'MX' | 'A' | 'AAAA') => records. */
      resolveRecords?: (name: string, type: string) => Promise<unknown[]>;
      ignoreIPv6?: boolean;
      preferIPv6?: boolean;
      blockLocalAddresses?: boolean;
    };
    /** Addresses not to connect to (tried already). */
    ignoreMXHosts?: string[];
    /** Thrown when every host is in ignoreMXHosts. */
    mxLastError?: Error;
    /** Called for each host that could not be connected to; mx-connect then tries the next. */
    connectError?: (error: MxConnectError, delivery: unknown, options: { host: string; port: number }) => void;
  }

  export interface MxConnection {
    socket: Socket;
    /** The MX host's name (the domain itself for an implicit MX). */
    hostname: string;
    /** The address connected to. */
    host: string;
    port: number;
  }

  export default function mxConnect(options: MxConnectOptions): Promise<MxConnection>;
}

// mx-connect's address check (lib/tools.js, 2.0.0), used for the MTA-STS policy host too (mta-sts.ts):
// the reason an address is refused, or false when it may be connected to.
declare module 'mx-connect/lib/tools.js' {
  export function isInvalid(delivery: { dnsOptions?: { blockLocalAddresses?: boolean; ignoreIPv6?: boolean } }, ip: string): string | false;
}
