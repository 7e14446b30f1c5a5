// The process of the bench's "smtp-server" (smtp-server-alone.ts): node smtp-server-alone-process.ts PORT
import { SMTPServer, type SMTPServerDataStream } from 'smtp-server';
import { ALIAS_COUNT, ALIAS_DOMAIN, aliasLocalPart } from '../aliases.ts';

const port = Number(process.argv[2]);
const aliases = new Set<string>();
for (let index = 1; index <= ALIAS_COUNT; index++) aliases.add(`${aliasLocalPart(index)}@${ALIAS_DOMAIN}`);

function refusal(message: string, code: number): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

const server = new SMTPServer({
  name: 'alone.bench.test',
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  hideSTARTTLS: true,
  disableReverseLookup: true,
  logger: false,
  // From patches/smtp-server+3.21.6.patch, as the edge sets them.
  greetingDelay: 0,
  coalesceReplies: true,
  onRcptTo(address, _session, callback) {
    if (aliases.has(address.address.toLowerCase())) callback();
    else callback(refusal('no such mailbox here', 550));
  },
  onData(stream: SMTPServerDataStream, _session, callback) {
    stream.on('end', () => callback(null, 'queued nowhere'));
    stream.on('error', callback);
    stream.resume();
  },
});
server.on('error', () => {});
server.listen(port, '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => server.close(() => process.exit(0)));
