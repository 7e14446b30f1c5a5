// A scripted SMTP server on a raw socket, line by line, for the relays' unit tests: the greeting,
// the EHLO lines and each command's answer are the test's to choose (a MAIL FROM line recorded, a
// STARTTLS that breaks the handshake), where smtp-server would answer by the book.
import net from 'node:net';

export interface LineSmtpScript {
  greeting: string;
  /** The EHLO reply's lines, the server's name first. */
  ehlo: string[];
  /** The EHLO reply as it goes on the wire, instead of ehlo's lines (a malformed one). */
  ehloReply?: Buffer;
  /** Answers a command itself (and returns true), or leaves it to the default "250 ok". */
  onCommand?: (line: string, socket: net.Socket) => boolean;
  /** The reply to the end of a message (the socket: to close it after the reply, say); a Buffer
   *  goes on the wire as it is, line ends included. */
  onMessage?: (socket: net.Socket) => string | Buffer;
  /** What ends each line the server writes: CRLF, or a bare LF (a server that never sends CR). */
  lineEnd?: '\r\n' | '\n';
}

export function lineSmtpServer(script: LineSmtpScript): net.Server {
  return net.createServer((socket) => {
    socket.on('error', () => {});
    let buffered = '';
    let inData = false;
    const eol = script.lineEnd ?? '\r\n';
    socket.write(`${script.greeting}${eol}`);
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      for (let at = buffered.indexOf('\r\n'); at >= 0; at = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            const reply = script.onMessage?.(socket) ?? '250 2.0.0 queued';
            socket.write(Buffer.isBuffer(reply) ? reply : `${reply}${eol}`);
          }
          continue;
        }
        const verb = line.split(' ')[0]?.toUpperCase();
        if (verb === 'EHLO' && script.ehloReply) socket.write(script.ehloReply);
        else if (verb === 'EHLO') socket.write(`${script.ehlo.map((text, index) => `250${index === script.ehlo.length - 1 ? ' ' : '-'}${text}`).join(eol)}${eol}`);
        else if (script.onCommand?.(line, socket)) continue;
        else if (verb === 'DATA') {
          inData = true;
          socket.write(`354 go on${eol}`);
        } else if (verb === 'QUIT') socket.end(`221 bye${eol}`);
        else socket.write(`250 ok${eol}`);
      }
    });
  });
}
