// CONNECT and close through the hooks, without a socket (hook-session.testkit.ts).
import { describe, expect, it } from 'vitest';
import { FakeSession, fakeEdge } from './hook-session.testkit.ts';

describe('onConnect / onClose', () => {
  it('greets a client and counts the connection while it is open', async () => {
    const edge = fakeEdge();
    const client = new FakeSession(edge);
    expect(await client.connect()).toBe('220');
    expect(await edge.metric('mail_mta_connections_total')).toEqual(['1']);
    expect(await edge.metric('mail_mta_connections_active')).toEqual(['1']);
    edge.context.inData.add(client.session.id);
    client.close();
    expect(await edge.metric('mail_mta_connections_active')).toEqual(['0']);
    expect(edge.context.inData.has(client.session.id)).toBe(false);
  });

  it('while the edge stops: 421 4.3.2, the client comes back later', async () => {
    const edge = fakeEdge();
    edge.stop();
    expect(await new FakeSession(edge).connect()).toBe('421 4.3.2 Service shutting down, try again later');
    expect(await edge.metric('mail_mta_connections_total')).toEqual(['0']);
  });

  it('a connection closed without being counted (refused before CONNECT, or while stopping) is not counted off', async () => {
    const edge = fakeEdge();
    const open = new FakeSession(edge);
    expect(await open.connect()).toBe('220');
    // smtp-server's 421 at MAIL_MTA_MAX_CLIENTS or to an early talker: onClose without onConnect.
    new FakeSession(edge).close();
    edge.stop();
    const late = new FakeSession(edge);
    expect(await late.connect()).toBe('421 4.3.2 Service shutting down, try again later');
    late.close();
    expect(await edge.metric('mail_mta_connections_active')).toEqual(['1']);
    open.close();
    open.close();
    expect(await edge.metric('mail_mta_connections_active')).toEqual(['0']);
  });

  it('past MAIL_MTA_MAX_CLIENTS_PER_NETWORK sessions of one network: 421 4.7.0, counted as refused, not as open', async () => {
    const edge = fakeEdge({ limits: { maxClientsPerNetwork: 2 } });
    const first = new FakeSession(edge, { remoteAddress: '198.51.100.7' });
    expect(await first.connect()).toBe('220');
    expect(await new FakeSession(edge, { remoteAddress: '198.51.100.7' }).connect()).toBe('220');
    const third = new FakeSession(edge, { remoteAddress: '198.51.100.7' });
    expect(await third.connect()).toBe('421 4.7.0 Too many connections from your network (at most 2), try again later');
    expect(await new FakeSession(edge, { remoteAddress: '198.51.100.8' }).connect()).toBe('220');
    expect(await edge.metric('mail_mta_rejections_total')).toEqual(['stage=connect,reason=too_many_connections 1']);
    third.close();
    expect(await edge.metric('mail_mta_connections_active')).toEqual(['3']);
    first.close();
    expect(await new FakeSession(edge, { remoteAddress: '198.51.100.7' }).connect()).toBe('220');
  });
});
