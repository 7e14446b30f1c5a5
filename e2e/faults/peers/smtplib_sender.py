"""A sending MTA we did not write, for the fault matrix: Python's smtplib, driven by smtplib-sender.ts.

Usage: python3 smtplib_sender.py < json, where json is
  {"host", "port", "concurrency", "deadlineSeconds", "retryDelaySeconds", "paceSeconds",
   "messages": [{"token", "from", "to", "raw"}]}
Each message is one transaction (EHLO, MAIL, RCPT, DATA) on a connection of its own, tried again on
every temporary outcome (a 4xx at any step, the connection refused or cut, no reply) until it is
answered 250 after the final dot or the deadline passes; a 5xx is final, as RFC 5321 4.2.5 has a
sending MTA do. While it runs it prints one line {"accepted": token} per message answered 250 (for
timing a fault); at the end one line {"records": [...]}, a record per message in the order given:
token, final (the reply that ended it, or null), tries, unanswered (final dots written that got no
reply), deferredAfterData (4xx after the final dot) and replies (every reply other than 2xx/354
that ended a try, in order, as "code text").
"""

import json
import smtplib
import sys
import threading
import time


def main():
    args = json.loads(sys.stdin.read())
    messages = args["messages"]
    deadline = time.monotonic() + args["deadlineSeconds"]
    records = [
        {"token": m["token"], "final": None, "tries": 0, "unanswered": 0, "deferredAfterData": 0, "replies": []}
        for m in messages
    ]
    lock = threading.Lock()
    state = {"next": 0}

    def say(line):
        with lock:
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    def text(code, message):
        return f"{code} {message.decode('utf-8', 'replace')}"

    def one_try(message, record):
        """The reply that ends the message (250 or 5xx), or None to try again."""
        dot_written = False
        client = None
        try:
            remaining = max(1.0, deadline - time.monotonic())
            client = smtplib.SMTP(args["host"], args["port"], local_hostname="sender.outside.test", timeout=remaining)
            for step in ("ehlo", "mail", "rcpt"):
                if step == "ehlo":
                    code, reply = client.ehlo()
                elif step == "mail":
                    code, reply = client.mail(message["from"])
                else:
                    code, reply = client.rcpt(message["to"])
                if code != 250:
                    record["replies"].append(text(code, reply))
                    return text(code, reply) if code >= 500 else None
            try:
                dot_written = True
                code, reply = client.data(message["raw"].encode("utf-8"))
            except smtplib.SMTPDataError as error:
                # DATA itself refused (no 354): nothing of the message was sent.
                dot_written = False
                record["replies"].append(text(error.smtp_code, error.smtp_error))
                return text(error.smtp_code, error.smtp_error) if error.smtp_code >= 500 else None
            if code == 250:
                return text(code, reply)
            record["replies"].append(text(code, reply))
            if code >= 500:
                return text(code, reply)
            record["deferredAfterData"] += 1
            return None
        except (smtplib.SMTPException, OSError) as error:
            if dot_written:
                record["unanswered"] += 1
            record["replies"].append(f"connection: {type(error).__name__}: {error}"[:300])
            return None
        finally:
            # QUIT's own reply changes nothing about the transaction's (smtplib's context manager
            # would raise on one other than 221, after a 250 already received).
            if client is not None:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()

    def worker():
        while True:
            with lock:
                index = state["next"]
                state["next"] += 1
            if index >= len(messages):
                return
            message, record = messages[index], records[index]
            while time.monotonic() < deadline:
                record["tries"] += 1
                final = one_try(message, record)
                if final is not None:
                    record["final"] = final
                    if final.startswith("250"):
                        say({"accepted": message["token"]})
                    break
                time.sleep(args["retryDelaySeconds"])
            time.sleep(args["paceSeconds"])

    threads = [threading.Thread(target=worker) for _ in range(args["concurrency"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    say({"records": records})


if __name__ == "__main__":
    main()
