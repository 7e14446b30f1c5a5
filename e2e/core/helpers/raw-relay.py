#!/usr/bin/env python3
# A relay on raw Python sockets (no SMTP library, neither ours nor nodemailer's or smtp-server's):
# it answers what a well-behaved server never would, chosen per recipient by the local part's first
# label (`dotmixed-1@inbox.test` -> rule `dotmixed`), or for the whole session by the mode set on the
# control port (a greeting, EHLO or STARTTLS that misbehaves: nothing about a recipient is known yet).
#
# Started with no arguments; prints "PORTS <smtp> <control>" on stdout. The control port takes one
# line and answers one line: "STATS" -> JSON {received, accepted, connections}, "MODE <name>" -> ok.
# It counts what it read after DATA (received) and what it answered 2xx to after the dot (accepted),
# by Message-ID, so duplicates are counted at the relay.
import json
import re
import socket
import struct
import sys
import threading
import time

lock = threading.Lock()
received = {}
accepted = {}
connections = [0]
mode = ['normal']

DEFAULT_EHLO = b'250-raw.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n'

# Replies to the final dot: (bytes, then 'close' | 'ignore' | 'keep' | 'reset' | 'rsetclose' |
# 'idleclose'). 'rsetclose' keeps the session until the next RSET, answers it and closes; 'idleclose'
# closes the session after half a second (an idle timeout), answering nothing sent meanwhile.
DOT = {
    'dotbare': (b'250\r\n', 'keep'),
    'dottwo': (b'2\r\n', 'keep'),
    'dotmixed': (b'250-2.0.0 first line says yes\r\n550 5.7.1 last line says no\r\n', 'keep'),
    'dotmixedrev': (b'550-5.7.1 first line says no\r\n250 2.0.0 last line says yes\r\n', 'keep'),
    'dotcontclose': (b'250-2.0.0 a reply never finished\r\n', 'close'),
    'dotconthang': (b'250-2.0.0 a reply never finished\r\n', 'ignore'),
    'dotokclose': (b'250 2.0.0 queued, and gone\r\n', 'close'),
    'dotclose': (b'', 'close'),
    'dotreset': (b'', 'reset'),
    'dotrsetclose': (b'250 2.0.0 queued, then gone after RSET\r\n', 'rsetclose'),
    'dotidleclose': (b'250 2.0.0 queued, then gone when idle\r\n', 'idleclose'),
    'dotnonl': (b'250 ' + b'A' * (10 * 1024 * 1024), 'ignore'),
    'dotbarelf': (b'250 2.0.0 queued\n550 5.7.1 no\r\n', 'keep'),
    'dotnul': (b'250 2.0.0 queued\x00as \xff\xfe\xc3 X\r\n', 'keep'),
    'dot552': (b'552 5.3.4 Message size exceeds fixed limit\r\n', 'keep'),
}
RCPT = {
    'rcpt452': b'452 4.5.3 too many recipients\r\n',
    'rcpt552': b'552 5.5.3 too many recipients\r\n',
    'rcpt552full': b'552 5.2.2 mailbox full\r\n',
    # Replies that are not replies (RFC 5321 4.2.1): lines that disagree on the code, a second
    # reply after a bare LF, a line without a code.
    'rcptmixed': b'250-2.1.5 first line says yes\r\n550 5.1.1 last line says no such user\r\n',
    'rcptmixedrev': b'550-5.1.1 first line says no such user\r\n250 2.1.5 last line says yes\r\n',
    'rcptbarelf': b'250 2.1.5 ok\n550 5.1.1 no such user\r\n',
    'rcptcodeless': b'250-2.1.5 ok\r\nno code on this line\r\n',
    # Well-formed, but with a NUL and bytes that are not UTF-8 in the text: stored safely.
    'rcptnul': b'450 4.2.0 busy\x00right now \xff\xfe\xc3 come back\r\n',
}
# Replies to MAIL FROM, chosen by the envelope sender's 'sender-<rule>-' (the recipient is not
# known yet).
MAIL = {
    'mailmixed': b'250-2.1.0 first line says yes\r\n550 5.7.1 last line says no\r\n',
    'mailbarelf': b'250 2.1.0 ok\n550 5.7.1 no\r\n',
}
# Replies to the DATA command, by the recipient's rule.
DATAREPLY = {
    'datamixed': b'354-go ahead\r\n554 5.5.1 no valid recipients\r\n',
    'databarelf': b'354 go ahead\n554 5.5.1 no valid recipients\r\n',
}


def message_id(raw):
    head = raw.split(b'\r\n\r\n', 1)[0].decode('latin1')
    m = re.search(r'^Message-ID:[ \t]*(.*)$', head, re.I | re.M)
    return m.group(1).strip() if m else '(no Message-ID)'


def bump(table, key):
    with lock:
        table[key] = table.get(key, 0) + 1


def reset(sock):
    # RST instead of FIN: SO_LINGER on, zero seconds.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


def drip(sock, data, interval):
    try:
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
            time.sleep(interval)
    except OSError:
        pass


def session(sock):
    with lock:
        connections[0] += 1
    current = mode[0]
    buf = b''
    rule = ''
    rcpts = 0
    close_at_rset = False
    try:
        if current == 'greet421':
            sock.sendall(b'421 4.3.2 too busy, go away\r\n')
            sock.close()
            return
        if current == 'greet554':
            sock.sendall(b'554 5.7.1 no SMTP service for you\r\n')
            sock.close()
            return
        if current == 'greetdrip':
            drip(sock, b'220 ' + b'x' * 100000, 1.0)
            return
        sock.sendall(b'220 raw.test ESMTP\r\n')
        while True:
            while b'\r\n' not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b'\r\n', 1)
            verb = line[:4].upper()
            if verb in (b'EHLO', b'HELO'):
                if current == 'ehlohang':
                    while sock.recv(65536):
                        pass
                    return
                if current == 'ehlo550':
                    sock.sendall(b'550 5.7.1 you may not\r\n')
                    continue
                if current == 'ehlomixed':
                    sock.sendall(b'250-raw.test\r\n550 5.7.1 you may not\r\n')
                    continue
                if current.startswith('starttls'):
                    sock.sendall(b'250-raw.test\r\n250 STARTTLS\r\n')
                else:
                    sock.sendall(DEFAULT_EHLO)
            elif verb == b'STAR':
                sock.sendall(b'220 2.0.0 go ahead\r\n')
                if current == 'starttlshang':
                    while sock.recv(65536):
                        pass
                    return
                sock.sendall(b'this is not TLS at all\r\n' * 4)
                sock.close()
                return
            elif verb == b'MAIL':
                rcpts = 0
                m = re.search(rb'sender-([a-z0-9]+)-', line)
                sock.sendall(MAIL.get((m.group(1) if m else b'').decode('latin1'), b'250 2.1.0 ok\r\n'))
            elif verb == b'RCPT':
                m = re.search(rb'<([^@>]*)@', line)
                rule = (m.group(1) if m else b'').decode('latin1').split('-')[0]
                reply = RCPT.get(rule, b'250 2.1.5 ok\r\n')
                if reply[:1] == b'2':
                    rcpts += 1
                sock.sendall(reply)
            elif verb == b'DATA':
                if rule in DATAREPLY:
                    sock.sendall(DATAREPLY[rule])
                    continue
                if rcpts == 0:
                    sock.sendall(b'554 5.5.1 no valid recipients\r\n')
                    continue
                sock.sendall(b'354 go ahead\r\n')
                if rule == 'datareset':
                    while len(buf) < 200:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    reset(sock)
                    return
                while b'\r\n.\r\n' not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                raw, buf = buf.split(b'\r\n.\r\n', 1)
                key = message_id(raw)
                bump(received, key)
                if rule == 'dotdrip':
                    drip(sock, b'250 2.0.0 ' + b'x' * 100000, 1.0)
                    return
                if rule == 'dotdripline':
                    try:
                        while True:
                            sock.sendall(b'250-2.0.0 still thinking\r\n')
                            time.sleep(1.0)
                    except OSError:
                        return
                reply, after = DOT.get(rule, (b'250 2.0.0 raw: queued\r\n', 'keep'))
                if reply[:1] == b'2':
                    bump(accepted, key)
                if reply:
                    sock.sendall(reply)
                if after == 'close':
                    sock.close()
                    return
                if after == 'reset':
                    reset(sock)
                    return
                if after == 'ignore':
                    while sock.recv(65536):
                        pass
                    return
                if after == 'idleclose':
                    time.sleep(0.5)
                    sock.close()
                    return
                close_at_rset = after == 'rsetclose'
            elif verb in (b'RSET', b'NOOP'):
                sock.sendall(b'250 2.0.0 ok\r\n')
                if verb == b'RSET' and close_at_rset:
                    sock.close()
                    return
            elif verb == b'QUIT':
                sock.sendall(b'221 2.0.0 bye\r\n')
                sock.close()
                return
            else:
                sock.sendall(b'502 5.5.2 not here\r\n')
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def control(sock):
    try:
        f = sock.makefile('rwb')
        line = f.readline().decode().strip()
        if line == 'STATS':
            with lock:
                out = json.dumps({'received': received, 'accepted': accepted, 'connections': connections[0]})
        elif line.startswith('MODE '):
            mode[0] = line[5:]
            out = 'ok'
        else:
            out = 'unknown'
        f.write(out.encode() + b'\n')
        f.flush()
    finally:
        sock.close()


def serve(listener, handler):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', 0))
    s.listen(256)
    return s


smtp, ctl = listen(), listen()
threading.Thread(target=serve, args=(smtp, session), daemon=True).start()
print(f'PORTS {smtp.getsockname()[1]} {ctl.getsockname()[1]}', flush=True)
try:
    serve(ctl, control)
except KeyboardInterrupt:
    pass
