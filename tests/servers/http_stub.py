"""HTTP stub of an SMS provider for the journeyc delivery tests.

Standard library only. HTTP/1.1 with keep-alive on 127.0.0.1.

    python http_stub.py --port PORT --log FILE [--auth USER:PASS]

PORT 0 picks a free port. Once listening it prints `READY <port>` on stdout.

Every request except the control ones below is appended to the log file (one
JSON object per line) before it is answered:
{"method", "path", "headers": {lowercased name: value}, "body", "outcome"},
where outcome is what the stub does with it: 201, 200, 401, 400, 429, 500,
slow or drop.

Answers:

- POST /2010-04-01/Accounts/<sid>/Messages.json (Twilio's message API): with
  --auth, HTTP Basic credentials must match (else 401, Twilio error 20003);
  201 with {"sid": "SM<32 hex digits>", "status": "queued", "to", "from",
  "body"} taken from the urlencoded form.
- any other path: 200 with {"ok": true, "id": "wh-<n>"}.

Faults, each taken by one request:

- 429: Retry-After: 1 and {"code": 20429, "message": "Too Many Requests"}.
- 500: a JSON error.
- 400: Twilio's invalid-number error 21211.
- drop: the connection is closed without a response.
- slow: 5 seconds of silence, then the normal answer.

Control endpoints (not logged):

- POST /_faults {"queue": [...]}: appends faults the next requests take in
  order. {"match": {"<substring>": [...]}}: a request whose body contains the
  substring (as sent, or with form encoding undone) takes the next fault of
  that list first. Both keys may be given.
- POST /_reset: clears all faults and the id counter.
- GET /_requests: the log as a JSON array.
"""

import argparse
import base64
import json
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = {"429", "500", "400", "drop", "slow"}
TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
SLOW_SECONDS = 5


class State:
    def __init__(self, log_path, auth):
        self.lock = threading.Lock()
        self.log = open(log_path, "a", encoding="utf-8")
        self.auth = auth
        self.queue = []
        self.matches = {}
        self.counter = 0

    def take_fault(self, body):
        """The fault this request takes, if any; called with the lock held.

        A match substring is looked for in the body as sent and in the body
        with form encoding undone, so "+8613800000000" matches
        "To=%2B8613800000000".
        """
        decoded = urllib.parse.unquote_plus(body)
        for substring, faults in self.matches.items():
            if faults and (substring in body or substring in decoded):
                return faults.pop(0)
        if self.queue:
            return self.queue.pop(0)
        return None

    def next_id(self):
        with self.lock:
            self.counter += 1
            return self.counter


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this a keep-alive
    # client waits for the delayed ACK on every response.
    disable_nagle_algorithm = True

    def version_string(self):
        return "journeyc-sms-stub"

    def log_message(self, format, *args):
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status, payload, extra_headers=()):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        state = self.server.state
        body = self.read_body().decode("utf-8", errors="replace")
        path = self.path.split("?", 1)[0]
        if path in ("/_faults", "/_reset", "/_requests"):
            self.control(state, path, body)
            return
        twilio = TWILIO_MESSAGES.match(path)
        authorized = state.auth is None or self.basic_auth() == state.auth
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        success = ("201" if authorized else "401") if twilio else "200"
        with state.lock:
            fault = state.take_fault(body)
            outcome = fault or success
            record = {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": body,
                "outcome": outcome,
            }
            state.log.write(json.dumps(record, ensure_ascii=False) + "\n")
            state.log.flush()
        if fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault == "slow":
            time.sleep(SLOW_SECONDS)
            outcome = success
        self.answer(state, outcome, body)

    def answer(self, state, outcome, body):
        if outcome == "429":
            self.send_json(
                429,
                {"code": 20429, "message": "Too Many Requests"},
                [("Retry-After", "1")],
            )
        elif outcome == "500":
            self.send_json(
                500, {"code": 20500, "message": "Internal Server Error", "status": 500}
            )
        elif outcome == "400":
            self.send_json(
                400,
                {
                    "code": 21211,
                    "message": "The 'To' number is not a valid phone number.",
                    "status": 400,
                },
            )
        elif outcome == "401":
            self.send_json(
                401,
                {"code": 20003, "message": "Authenticate", "status": 401},
                [("WWW-Authenticate", 'Basic realm="journeyc-sms-stub"')],
            )
        elif outcome == "201":
            form = urllib.parse.parse_qs(body, keep_blank_values=True)

            def field(name):
                values = form.get(name)
                return values[0] if values else None

            self.send_json(
                201,
                {
                    "sid": f"SM{state.next_id():032x}",
                    "status": "queued",
                    "to": field("To"),
                    "from": field("From"),
                    "body": field("Body"),
                },
            )
        else:
            self.send_json(200, {"ok": True, "id": f"wh-{state.next_id()}"})

    def basic_auth(self):
        value = self.headers.get("Authorization", "")
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            return base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except ValueError:
            return None

    def control(self, state, path, body):
        if path == "/_requests" and self.command == "GET":
            with state.lock:
                state.log.flush()
                with open(state.log.name, encoding="utf-8") as log:
                    entries = [json.loads(line) for line in log if line.endswith("\n")]
            self.send_json(200, entries)
        elif path == "/_reset" and self.command == "POST":
            with state.lock:
                state.queue.clear()
                state.matches.clear()
                state.counter = 0
            self.send_json(200, {"ok": True})
        elif path == "/_faults" and self.command == "POST":
            try:
                spec = json.loads(body or "{}")
                queue = [str(f) for f in spec.get("queue", [])]
                matches = {
                    str(k): [str(f) for f in v]
                    for k, v in spec.get("match", {}).items()
                }
            except (ValueError, AttributeError, TypeError) as error:
                self.send_json(400, {"error": f"bad fault spec: {error}"})
                return
            unknown = set(queue).union(*matches.values()) - FAULTS
            if unknown:
                self.send_json(
                    400,
                    {"error": f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}"},
                )
                return
            with state.lock:
                state.queue.extend(queue)
                for substring, faults in matches.items():
                    state.matches.setdefault(substring, []).extend(faults)
                snapshot = {"queue": list(state.queue), "match": dict(state.matches)}
            self.send_json(200, snapshot)
        else:
            self.send_json(405, {"error": f"{self.command} {path} is not a control call"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def handle_error(self, request, client_address):
        # A client that hangs up mid-response (timeouts, dropped keep-alive
        # connections) is part of the tests, not an error of the stub.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--auth", help="USER:PASS required as HTTP Basic auth")
    args = parser.parse_args()

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args.log, args.auth)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.state.log.close()


if __name__ == "__main__":
    main()
