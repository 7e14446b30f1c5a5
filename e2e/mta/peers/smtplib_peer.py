"""A real SMTP client we did not write: Python's smtplib, driven by e2e/mta/real-peers.e2e.test.ts.

Usage: python3 smtplib_peer.py '<json>' (or the json on stdin, for messages past the argument limit) where json is
  {"host", "port", "helo", "starttls"?, "transactions": [{"from", "to": [...], "mailOptions": [...], "message" | "messageBase64"}]}
Prints one JSON object: the EHLO features, then per transaction the MAIL, RCPT and DATA replies.
With "starttls": true it upgrades after the first EHLO (not verifying the certificate: the tests'
are self-signed) and says which certificate the server presented (its SHA-256, hex), then EHLOs again.
smtplib dot-stuffs and sends MAIL/RCPT/DATA itself; SMTPUTF8 in mailOptions makes it send the
envelope as UTF-8 (RFC 6531), as it does for a real sender. "messageBase64" gives the message as
bytes (8-bit bytes that are not UTF-8, NUL), sent as they are but for smtplib's dot-stuffing.
"""

import base64
import hashlib
import json
import smtplib
import ssl
import sys


def reply(pair):
    code, text = pair
    return {"code": code, "text": text.decode("utf-8", "replace")}


def main():
    args = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    out = {"transactions": []}
    with smtplib.SMTP(args["host"], args["port"], local_hostname=args["helo"], timeout=60) as client:
        out["ehlo"] = reply(client.ehlo(args["helo"]))
        out["features"] = sorted(client.esmtp_features.keys())
        if args.get("starttls"):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            out["starttls"] = reply(client.starttls(context=context))
            out["certificate_sha256"] = hashlib.sha256(client.sock.getpeercert(binary_form=True)).hexdigest()
            out["ehlo_after_tls"] = reply(client.ehlo(args["helo"]))
        for transaction in args["transactions"]:
            result = {"rcpt": []}
            result["mail"] = reply(client.mail(transaction["from"], transaction["mailOptions"]))
            for recipient in transaction["to"]:
                result["rcpt"].append(reply(client.rcpt(recipient)))
            if any(r["code"] == 250 for r in result["rcpt"]):
                if "messageBase64" in transaction:
                    message = base64.b64decode(transaction["messageBase64"])
                else:
                    message = transaction["message"].encode("utf-8")
                result["data"] = reply(client.data(message))
            else:
                result["rset"] = reply(client.rset())
            out["transactions"].append(result)
        out["quit"] = reply(client.docmd("QUIT"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
