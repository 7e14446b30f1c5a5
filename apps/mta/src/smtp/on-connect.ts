// CONNECT: smtp-server enforces MAIL_MTA_MAX_CLIENTS before this hook (421 to the extra client),
// and calls it only once the greeting delay has passed without the client talking: a pass. Here
// a client network past MAIL_MTA_MAX_CLIENTS_PER_NETWORK open sessions is refused with 421.
// CLOSE: called for every connection, also the ones refused before or at CONNECT; only a connection
// CONNECT counted is counted off (the gauge once went below zero at MAIL_MTA_MAX_CLIENTS).
import type { SMTPServerSession } from 'smtp-server';
import type { EdgeContext } from './edge-context.ts';
import { shuttingDown, tooManyConnections } from './replies.ts';

export function onConnect(context: EdgeContext) {
  return (session: SMTPServerSession, callback: (error?: Error | null) => void): void => {
    context.greeting.pass(session.remoteAddress);
    if (context.isStopping()) {
      callback(shuttingDown());
      return;
    }
    if (!context.connected.admit(session.id, session.remoteAddress)) {
      context.metrics.rejections.inc({ stage: 'connect', reason: 'too_many_connections' });
      context.logger.info({ session: session.id, client: session.remoteAddress }, 'connection refused: too many from its network');
      callback(tooManyConnections(context.limits.maxClientsPerNetwork));
      return;
    }
    context.metrics.connections.inc();
    context.metrics.activeConnections.inc();
    context.traces.begin(session);
    context.logger.debug({ session: session.id, client: session.remoteAddress }, 'connection opened');
    callback();
  };
}

export function onClose(context: EdgeContext) {
  return (session: SMTPServerSession): void => {
    context.inData.delete(session.id);
    context.traces.closed(session);
    if (context.connected.release(session.id)) context.metrics.activeConnections.dec();
    context.logger.debug({ session: session.id }, 'connection closed');
  };
}
