#!/usr/bin/env python3
"""webhook_receiver.py - the consumer the webhook tests deliver to: HTTPS (http.server + ssl),
with its OWN Standard Webhooks verification (hmac/hashlib, not the operator's code).

  webhook_receiver.py --port P --cert C --key K --keys-file F --log L [--control D]

F holds the accepted secrets (whsec_..., one per line; re-read on every request, so a test can
rotate them). Every request is appended to L as one JSON line: id, tenant, sequence, status
answered, verified (a signature matched an accepted key), signatures (how many were sent).
Files in the control directory D (re-read on every request) change the answers:
  status          an HTTP status to answer to every request (e.g. 503, 400)
  fail-tenant     "TENANT STATUS": answer STATUS to that tenant's events only
  retry-after     "N": with a 429, the Retry-After header
  delay           seconds to wait before answering
The last accepted request is kept in D/last-body and D/last-headers (JSON).
A request with a bad or missing signature, or a timestamp more than 5 minutes off, gets 401.
"""
import argparse, base64, hashlib, hmac, json, os, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()


def read(name):
    try:
        with open(os.path.join(args.control, name)) as f:
            return f.read().strip()
    except (OSError, TypeError):
        return ""


def keys():
    out = []
    with open(args.keys_file) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(base64.b64decode(line[len("whsec_"):] if line.startswith("whsec_") else line))
    return out


def verify(msg_id, ts, body, header):
    try:
        if abs(time.time() - int(ts)) > 300:
            return False
    except ValueError:
        return False
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    for k in keys():
        expected = base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
        for sig in header.split(" "):
            version, _, value = sig.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sig = self.headers.get("webhook-signature", "")
        if not msg_id:  # a readiness probe: answered, never logged
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        ok = verify(msg_id, ts, body, sig)
        try:
            ev = json.loads(body)
        except ValueError:
            ev = {}
        tenant = ev.get("subject", "").removeprefix("tenant/")
        status = 200 if ok and ev.get("id") == msg_id else 401
        delay = read("delay")
        if delay:
            time.sleep(float(delay))
        forced = read("status")
        if status == 200 and forced:
            status = int(forced)
        ft = read("fail-tenant").split()
        if status == 200 and len(ft) == 2 and ft[0] == tenant:
            status = int(ft[1])
        rec = {"id": msg_id, "tenant": tenant, "sequence": ev.get("tenancysequence"), "status": status,
               "verified": ok, "signatures": len(sig.split(" ")) if sig else 0, "type": ev.get("type")}
        with lock:
            with open(args.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if status == 200:  # the last accepted request, raw, for the documented examples' test
                with open(os.path.join(args.control, "last-body"), "wb") as f:
                    f.write(body)
                with open(os.path.join(args.control, "last-headers"), "w") as f:
                    json.dump({"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}, f)
        self.send_response(status)
        if status == 429 and read("retry-after"):
            self.send_header("Retry-After", read("retry-after"))
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    global args
    p = argparse.ArgumentParser()
    for a in ("--port", "--cert", "--key", "--keys-file", "--log", "--control"):
        p.add_argument(a)
    args = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", int(args.port)), Handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
