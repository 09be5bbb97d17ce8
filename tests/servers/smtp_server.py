"""SMTP server the journeyc delivery tests send mail to.

A real ESMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts and
fails on purpose for some recipients, so the tests can check journeyc's
retries and bounces against a real conversation.

    python smtp_server.py --port PORT --dir DIR

PORT 0 picks a free port. Once listening it prints `READY <port>` on stdout.
With `--auth USER:PASS` the server offers AUTH PLAIN and LOGIN (also without
TLS, as a relay on loopback may), refuses MAIL before a login, and 535s any
other credentials.

Files in DIR, one JSON object per line:

- received.jsonl: every accepted message, {"mail_from", "rcpt_tos", "data",
  "queue_id", "login"}; login is the user name the session authenticated
  as (null without --auth); data is the message as UTF-8 text, CRLF kept, dot-stuffing
  undone.
- rcpt.jsonl: every RCPT decision, {"rcpt", "code", "attempt"}; attempt counts
  the RCPT commands for that exact address, across connections, from 1.

Faults, by the recipient's local part (case-insensitive):

- bounce...       550 5.1.1 at RCPT, every time.
- tempfail<N>...  451 4.7.1 at RCPT for the first N attempts, then accepted.
- drop<N>...      the first N messages to that address: the connection is
                  closed right after the message content, without a reply.
                  Later ones are accepted.
- anything else   accepted.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# Large enough for any message journeyc renders, attachments included.
DATA_SIZE_LIMIT = 32 * 1024 * 1024

TEMPFAIL = re.compile(r"tempfail(\d+)")
DROP = re.compile(r"drop(\d+)")


def local_part(address):
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


class Handler:
    def __init__(self, directory):
        self.received = open(
            os.path.join(directory, "received.jsonl"), "a", encoding="utf-8"
        )
        self.rcpts = open(os.path.join(directory, "rcpt.jsonl"), "a", encoding="utf-8")
        self.queued = 0
        # RCPT commands per exact address, and messages per drop address.
        self.rcpt_attempts = {}
        self.drop_attempts = {}

    def close(self):
        self.received.close()
        self.rcpts.close()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        attempt = self.rcpt_attempts.get(address, 0) + 1
        self.rcpt_attempts[address] = attempt
        local = local_part(address)
        if local.startswith("bounce"):
            code = 550
            reply = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        else:
            tempfail = TEMPFAIL.match(local)
            if tempfail and attempt <= int(tempfail.group(1)):
                code = 451
                reply = "451 4.7.1 Try again later"
            else:
                code = 250
                reply = "250 2.1.5 Ok"
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(rcpt_options)
        self.rcpts.write(
            json.dumps({"rcpt": address, "code": code, "attempt": attempt}) + "\n"
        )
        self.rcpts.flush()
        return reply

    async def handle_DATA(self, server, session, envelope):
        drop = False
        for address in envelope.rcpt_tos:
            match = DROP.match(local_part(address))
            if match:
                attempt = self.drop_attempts.get(address, 0) + 1
                self.drop_attempts[address] = attempt
                if attempt <= int(match.group(1)):
                    drop = True
        if drop:
            # No reply: the client sees the connection go away after sending
            # the message. Closing the transport cancels this session's task,
            # which is waiting here.
            server.transport.abort()
            await asyncio.Event().wait()
        self.queued += 1
        queue_id = f"Q{self.queued:06d}"
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", errors="replace"),
            "queue_id": queue_id,
            "login": login_name(session),
        }
        self.received.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.received.flush()
        return f"250 2.0.0 Ok: queued as {queue_id}"


def login_name(session):
    data = getattr(session, "auth_data", None)
    if isinstance(data, LoginPassword):
        return data.login.decode("utf-8", errors="replace")
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return None


class Authenticator:
    """Accepts exactly one user name and password."""

    def __init__(self, credentials):
        user, _, password = credentials.partition(":")
        self.user = user.encode("utf-8")
        self.password = password.encode("utf-8")

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def tls_context(directory):
    """A certificate authority and a server certificate for 127.0.0.1 made
    for this run; the CA goes to DIR/ca.pem for the client to trust."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    span = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))

    def certificate(subject, issuer, key, signing_key, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(span[0])
            .not_valid_after(span[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("journeyc test CA", "journeyc test CA", ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("127.0.0.1", "journeyc test CA", key, ca_key, False)
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as out:
        out.write(ca.public_bytes(pem))
    chain = os.path.join(directory, "server.pem")
    with open(chain, "wb") as out:
        out.write(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_file = os.path.join(directory, "server.key")
    with open(key_file, "wb") as out:
        out.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key_file)
    return context


async def serve(port, directory, tls="none", auth=None):
    loop = asyncio.get_running_loop()
    handler = Handler(directory)
    context = tls_context(directory) if tls != "none" else None

    def session():
        return SMTP(
            handler,
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=True,
            decode_data=False,
            # A fixed name: the default looks the host up for every connection.
            hostname="journeyc-test-smtp",
            ident="journeyc test SMTP",
            loop=loop,
            # STARTTLS: offered, and required before MAIL.
            tls_context=context if tls == "starttls" else None,
            require_starttls=tls == "starttls",
            authenticator=Authenticator(auth) if auth else None,
            auth_required=bool(auth),
            auth_require_tls=False,
        )

    server = await loop.create_server(
        session,
        host="127.0.0.1",
        port=port,
        backlog=512,
        ssl=context if tls == "implicit" else None,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        handler.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--auth", metavar="USER:PASS")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args.port, args.dir, args.tls, args.auth))


if __name__ == "__main__":
    main()
