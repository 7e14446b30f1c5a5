import { describe, expect, it } from 'vitest';
import { ClientConnections } from './client-connections.ts';

describe('ClientConnections: open sessions per client network', () => {
  it('admits up to the cap per network, other networks unaffected, and frees a place when one closes', () => {
    const connections = new ClientConnections(2);
    expect(connections.admit('a1', '192.0.2.1')).toBe(true);
    expect(connections.admit('a2', '::ffff:192.0.2.1')).toBe(true);
    expect(connections.admit('a3', '192.0.2.1')).toBe(false);
    expect(connections.admit('b1', '192.0.2.2')).toBe(true);
    expect(connections.size).toBe(3);
    expect(connections.release('a1')).toBe(true);
    expect(connections.admit('a3', '192.0.2.1')).toBe(true);
  });

  it('counts an IPv6 /64 as one network', () => {
    const connections = new ClientConnections(1);
    expect(connections.admit('x', '2001:db8:1:2::1')).toBe(true);
    expect(connections.admit('y', '2001:db8:1:2:ffff::9')).toBe(false);
    expect(connections.admit('z', '2001:db8:1:3::1')).toBe(true);
  });

  it('counts out only what it counted in, once: a refused session closing changes nothing', () => {
    const connections = new ClientConnections(1);
    connections.admit('in', '192.0.2.1');
    expect(connections.admit('refused', '192.0.2.1')).toBe(false);
    expect(connections.release('refused')).toBe(false);
    expect(connections.release('never-seen')).toBe(false);
    expect(connections.size).toBe(1);
    expect(connections.release('in')).toBe(true);
    expect(connections.release('in')).toBe(false);
    expect(connections.size).toBe(0);
  });
});
