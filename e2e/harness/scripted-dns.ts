// A DNS server the test scripts name by name, for what dnsmasq cannot do: one name that never
// answers while the others do, SERVFAIL for one name, TXT records of many character-strings or with
// any bytes (NUL, invalid UTF-8), answers that come late. UDP and TCP on one port of 127.0.0.1
// (an answer over 512 bytes goes out over UDP truncated, TC set, and the resolver asks again over
// TCP, as with any server). Every question is counted, so a test can say how many lookups a
// message cost.
import dgram from 'node:dgram';
import net from 'node:net';

/** Record types by their number (RFC 1035 3.2.2, RFC 3596). */
const TYPES = { A: 1, CNAME: 5, PTR: 12, MX: 15, TXT: 16, AAAA: 28 } as const;
export type RecordType = keyof typeof TYPES;

/** TXT: each record a list of character-strings (strings or raw bytes; longer than 255 bytes: split). */
export type TxtRecord = Array<string | Buffer>;

/** How one name and type is answered. */
export type Answer =
  | { txt: TxtRecord[] }
  | { a: string[] }
  | { aaaa: string[] }
  | { mx: Array<[number, string]> }
  | { cname: string }
  | { rcode: 'SERVFAIL' | 'REFUSED' | 'NXDOMAIN' | 'NODATA' }
  /** Never answered: the query times out at the resolver. */
  | 'silent';

/** What a name answers: by type, with an optional delay; names not found are NXDOMAIN. */
export type Zone = (name: string, type: RecordType | number) => (Answer & { delayMs?: number }) | Answer | undefined;

export interface ScriptedDns {
  /** ip:port, for MAIL_DNS_SERVERS. */
  server: string;
  /** Questions received, as "TYPE name" (lower case), in order. */
  readonly questions: string[];
  close(): Promise<void>;
}

const RCODES = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

function readName(message: Buffer, start: number): { name: string; next: number } {
  const labels: string[] = [];
  let at = start;
  while (at < message.length) {
    const length = message[at]!;
    if (length === 0) return { name: labels.join('.'), next: at + 1 };
    labels.push(message.subarray(at + 1, at + 1 + length).toString('latin1'));
    at += 1 + length;
  }
  throw new Error('truncated name');
}

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter((label) => label !== '');
  return Buffer.concat([...parts.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'latin1')])), Buffer.from([0])]);
}

function rdataOf(answer: Answer): { type: number; rdatas: Buffer[] } | null {
  if (typeof answer === 'string' || 'rcode' in answer) return null;
  if ('txt' in answer) {
    const rdatas = answer.txt.map((record) =>
      Buffer.concat(
        record.flatMap((text) => {
          // A text longer than a character-string holds (255 bytes) goes out as several.
          const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
          const strings: Buffer[] = [];
          for (let at = 0; at === 0 || at < bytes.length; at += 255) {
            const part = bytes.subarray(at, at + 255);
            strings.push(Buffer.from([part.length]), part);
          }
          return strings;
        }),
      ),
    );
    return { type: TYPES.TXT, rdatas };
  }
  if ('a' in answer) return { type: TYPES.A, rdatas: answer.a.map((ip) => Buffer.from(ip.split('.').map(Number))) };
  if ('aaaa' in answer) return { type: TYPES.AAAA, rdatas: answer.aaaa.map((ip) => ipv6Bytes(ip)) };
  if ('mx' in answer) {
    return {
      type: TYPES.MX,
      rdatas: answer.mx.map(([preference, exchange]) => Buffer.concat([Buffer.from([preference >> 8, preference & 0xff]), encodeName(exchange)])),
    };
  }
  return { type: TYPES.CNAME, rdatas: [encodeName(answer.cname)] };
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':').map((group) => Number.parseInt(group, 16)) : []);
  const left = groups(head);
  const right = groups(tail);
  const all = [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
  const bytes = Buffer.alloc(16);
  for (const [index, group] of all.entries()) bytes.writeUInt16BE(group, index * 2);
  return bytes;
}

function response(query: Buffer, rcode: number, answerType: number, rdatas: Buffer[], questionEnd: number): Buffer {
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  header[2] = 0x84 | (query[2]! & 0x01); // QR, AA, RD as asked
  header[3] = rcode;
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const question = query.subarray(12, questionEnd);
  const records = rdatas.map((rdata) => {
    const fixed = Buffer.alloc(12);
    fixed.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    fixed.writeUInt16BE(answerType, 2);
    fixed.writeUInt16BE(1, 4); // IN
    fixed.writeUInt32BE(300, 6);
    fixed.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([fixed, rdata]);
  });
  return Buffer.concat([header, question, ...records]);
}

function truncated(full: Buffer, questionEnd: number): Buffer {
  const reply = Buffer.from(full.subarray(0, questionEnd));
  reply[2] = reply[2]! | 0x02; // TC
  reply.writeUInt16BE(0, 6);
  return reply;
}

export async function startScriptedDns(zone: Zone): Promise<ScriptedDns> {
  const questions: string[] = [];
  const timers = new Set<NodeJS.Timeout>();

  /** The reply to one query, or null for none; called back after the answer's delay. */
  const answer = (query: Buffer, reply: (bytes: Buffer, questionEnd: number) => void) => {
    let name: string;
    let next: number;
    try {
      ({ name, next } = readName(query, 12));
    } catch {
      return;
    }
    const typeNumber = query.readUInt16BE(next);
    const questionEnd = next + 4;
    const type = (Object.entries(TYPES).find(([, number]) => number === typeNumber)?.[0] as RecordType | undefined) ?? typeNumber;
    questions.push(`${type} ${name.toLowerCase()}`);
    const scripted = zone(name.toLowerCase(), type);
    if (scripted === 'silent') return;
    const send = () => {
      if (scripted === undefined) return reply(response(query, RCODES.NXDOMAIN, typeNumber, [], questionEnd), questionEnd);
      if ('rcode' in scripted) {
        const rcode = scripted.rcode === 'NODATA' ? RCODES.NOERROR : RCODES[scripted.rcode];
        return reply(response(query, rcode, typeNumber, [], questionEnd), questionEnd);
      }
      const records = rdataOf(scripted);
      // A name that has records of other types only: NODATA.
      if (!records || records.type !== typeNumber) return reply(response(query, RCODES.NOERROR, typeNumber, [], questionEnd), questionEnd);
      reply(response(query, RCODES.NOERROR, records.type, records.rdatas, questionEnd), questionEnd);
    };
    const delayMs = typeof scripted === 'object' && 'delayMs' in scripted ? (scripted.delayMs ?? 0) : 0;
    if (delayMs > 0) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, delayMs);
      timers.add(timer);
    } else send();
  };

  const udp = dgram.createSocket('udp4');
  udp.on('message', (query, peer) => {
    answer(query, (bytes, questionEnd) => {
      const out = bytes.length > 512 ? truncated(bytes, questionEnd) : bytes;
      udp.send(out, peer.port, peer.address);
    });
  });
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;

  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let pending = Buffer.alloc(0);
    socket.on('data', (data) => {
      pending = Buffer.concat([pending, data]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const query = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + query.length);
        answer(Buffer.from(query), (bytes) => {
          const length = Buffer.alloc(2);
          length.writeUInt16BE(bytes.length);
          if (!socket.destroyed) socket.write(Buffer.concat([length, bytes]));
        });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(port, '127.0.0.1', resolve);
  });

  return {
    server: `127.0.0.1:${port}`,
    questions,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      await new Promise<void>((resolve) => udp.close(() => resolve()));
    },
  };
}
