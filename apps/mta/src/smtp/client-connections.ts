// Connections one client network (IPv4 address, IPv6 /64: packages/shared/src/net/client-network.ts)
// holds open at once in this edge process, at most MAIL_MTA_MAX_CLIENTS_PER_NETWORK (Postfix's
// smtpd_client_connection_count_limit). MAIL_MTA_MAX_CLIENTS bounds every client together: without a
// cap per network, one client that opened that many connections and sent a NOOP every few minutes
// on each (the idle timeout is 5 minutes) held every slot, and every other sender was told 421.
// It is also the edge's count of open sessions (mail_mta_connections_active): only a session counted
// in is counted out, since smtp-server closes a client it refused before CONNECT (MAIL_MTA_MAX_CLIENTS,
// an early talker) through the close hook as well.
import { clientNetworkKey } from '@postern/shared';

export class ClientConnections {
  private readonly perNetwork: number;
  /** Open sessions per client network; a network with none is not kept. */
  private readonly open = new Map<string, number>();
  /** The network each counted session belongs to. */
  private readonly networkOf = new Map<string, string>();

  constructor(perNetwork: number) {
    this.perNetwork = perNetwork;
  }

  /** Sessions counted in and not yet out. */
  get size(): number {
    return this.networkOf.size;
  }

  /** Counts the session in, unless its network already holds perNetwork sessions: then false, nothing counted. */
  admit(sessionId: string, remoteAddress: string): boolean {
    const network = clientNetworkKey(remoteAddress);
    const open = this.open.get(network) ?? 0;
    if (open >= this.perNetwork) return false;
    this.open.set(network, open + 1);
    this.networkOf.set(sessionId, network);
    return true;
  }

  /** Counts the session out; false when it was never counted in. */
  release(sessionId: string): boolean {
    const network = this.networkOf.get(sessionId);
    if (network === undefined) return false;
    this.networkOf.delete(sessionId);
    const open = (this.open.get(network) ?? 1) - 1;
    if (open > 0) this.open.set(network, open);
    else this.open.delete(network);
    return true;
  }
}
