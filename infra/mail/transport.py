"""Where the e-mails go (SPEC 8): an SMTP server (`LEDGER_SMTP_URL`, `smtp://user:pass@host:port`
with STARTTLS when the server offers it, or `smtps://` for TLS from the first byte), else `.eml`
files in `<data dir>/outbox/` (the embedded default). A transport either accepts a message or
raises DeliveryFailed; the mailer keeps a message that failed and tries it again later."""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from infra.settings import Settings

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


class DeliveryFailed(Exception):
    """The message did not go out (server unreachable, refused it, disk full); try again later."""


class Transport(Protocol):
    name: str  # smtp | outbox (recorded on the Email.Sent event)

    def send(self, message: EmailMessage, key: str) -> None: ...


class SmtpTransport:
    name = "smtp"

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
            raise ValueError("LEDGER_SMTP_URL is smtp://[user:pass@]host[:port] or smtps://...")
        self.tls = parsed.scheme == "smtps"
        self.host = parsed.hostname
        self.port = parsed.port or DEFAULT_PORTS[parsed.scheme]
        self.user = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        self.timeout = timeout

    def __repr__(self) -> str:  # never the password
        return f"SmtpTransport({'smtps' if self.tls else 'smtp'}://{self.host}:{self.port})"

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.tls:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        return smtp

    def send(self, message: EmailMessage, key: str) -> None:
        try:
            with self._connect() as smtp:
                if self.user is not None:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as failed:
            # OSError covers refused and timed-out connections and TLS failures (ssl.SSLError).
            raise DeliveryFailed(f"{self!r}: {type(failed).__name__}: {failed}") from failed


class OutboxFolder:
    """One `.eml` file per message, named after the message's key: writing the same message
    again replaces its file (written aside, then renamed: a reader never sees half of one)."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_of(self, key: str) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.eml"

    def send(self, message: EmailMessage, key: str) -> None:
        target = self.path_of(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".part")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(message.as_bytes())
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as failed:
            raise DeliveryFailed(f"outbox {self.folder}: {failed}") from failed


def transport_from(settings: Settings) -> SmtpTransport | OutboxFolder:
    if settings.smtp_url is not None:
        return SmtpTransport(settings.smtp_url.get_secret_value(), settings.smtp_timeout_seconds)
    return OutboxFolder(settings.data_dir / "outbox")
