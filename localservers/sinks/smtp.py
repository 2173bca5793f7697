"""A minimal SMTP server on loopback that accepts every message and records it (no TLS, no auth).

Enough of RFC 5321 for ``smtplib`` and Airflow's SMTP provider with ``disable_tls``/``disable_ssl``:
EHLO/HELO, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT. Each message is recorded with
its envelope, headers and decoded text parts; ``--http-port`` serves the records (see the package).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localservers.sinks.recorder import Recorder, handler_for

ADDRESS = re.compile(rb"<([^>]*)>")
MAX_LINE = 64 * 1024


def parse_message(data: bytes, mail_from: str, rcpt_to: list[str]) -> dict[str, Any]:
    """The envelope, the headers and the text of every ``text/*`` part, decoded."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    texts = [
        part.get_content()
        for part in message.walk()
        if part.get_content_maintype() == "text" and not part.is_multipart()
    ]
    return {
        "mail_from": mail_from,
        "rcpt_to": rcpt_to,
        "subject": str(message.get("Subject", "")),
        "headers": {key: str(value) for key, value in message.items()},
        "body": "\n".join(texts),
        "raw": data.decode("utf-8", "replace"),
    }


class SmtpSession:
    """One client connection: a command loop that collects envelopes and messages into ``recorder``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, recorder: Recorder) -> None:
        self.reader, self.writer, self.recorder = reader, writer, recorder
        self.reset()

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.rcpt_to: list[str] = []

    async def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()

    async def run(self) -> None:
        await self.send("220 phone-sync-sink ESMTP ready")
        while line := await self.reader.readline():
            command, _, argument = line.rstrip(b"\r\n").partition(b" ")
            verb = command.upper().decode("ascii", "replace")
            if verb == "EHLO":
                await self.send("250-phone-sync-sink\r\n250-8BITMIME\r\n250 SMTPUTF8")
            elif verb == "HELO":
                await self.send("250 phone-sync-sink")
            elif verb == "MAIL":
                self.reset()
                found = ADDRESS.search(argument)
                self.mail_from = found.group(1).decode() if found else ""
                await self.send("250 OK")
            elif verb == "RCPT":
                if self.mail_from is None:
                    await self.send("503 MAIL first")
                    continue
                found = ADDRESS.search(argument)
                self.rcpt_to.append(found.group(1).decode() if found else "")
                await self.send("250 OK")
            elif verb == "DATA":
                if not self.rcpt_to:
                    await self.send("503 RCPT first")
                    continue
                await self.send("354 End data with <CR><LF>.<CR><LF>")
                self.recorder.add(parse_message(await self.read_data(), self.mail_from or "", self.rcpt_to))
                self.reset()
                await self.send("250 OK: recorded")
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    self.reset()
                await self.send("250 OK")
            elif verb == "QUIT":
                await self.send("221 Bye")
                break
            else:
                await self.send("502 Command not implemented")
        self.writer.close()

    async def read_data(self) -> bytes:
        lines = []
        while (line := await self.reader.readline()) and line.rstrip(b"\r\n") != b".":
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)


async def serve(host: str, port: int, recorder: Recorder, http_port: int | None = None) -> None:
    """Serve SMTP; the HTTP API starts only once SMTP listens, so a ready API means a ready sink."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await SmtpSession(reader, writer, recorder).run()

    server = await asyncio.start_server(on_client, host, port, limit=MAX_LINE)
    if http_port:
        http = ThreadingHTTPServer((host, http_port), handler_for(recorder))
        threading.Thread(target=http.serve_forever, daemon=True).start()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localservers.sinks.smtp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="SMTP port")
    parser.add_argument("--http-port", type=int, help="serve the received messages over HTTP on this port")
    parser.add_argument("--record", type=Path, help="also append each message as a JSON line to this file")
    args = parser.parse_args(argv)
    print(f"SMTP sink on {args.host}:{args.port}", flush=True)
    asyncio.run(serve(args.host, args.port, Recorder(args.record), args.http_port))


if __name__ == "__main__":
    main()
