"""Where the broker is and who we are to it: URLs, credentials, run ids, and the errors.

Everything a user types about a broker (``--broker mqtt://HOST:PORT``, ``--tls-ca``,
``--username`` with ``--password-file``, ``--run-id``) is checked here, before anything connects,
and turned into a frozen :class:`BrokerConfig`. A problem is a :class:`ConfigError` whose message
is one line naming the option and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_BROKER",
    "BrokerConfig",
    "ConfigError",
    "ConnectError",
    "MqttBridgeError",
    "NoRunError",
    "check_run_id",
    "parse_broker_url",
    "read_password_file",
]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
"""Where ``stackyard attach`` looks when no ``--broker`` is given."""
SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}
"""URL scheme -> (TLS, default port)."""
MAX_PASSWORD_BYTES = 4096
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A run id is one topic level: no ``/``, ``+`` or ``#``, at most 64 characters."""


class MqttBridgeError(Exception):
    """Base of every error of the MQTT bridge; the message is one line a user can act on."""


class ConfigError(MqttBridgeError):
    """A broker URL, credential file or run id that cannot be used."""


class ConnectError(MqttBridgeError):
    """The broker could not be reached, or refused us. ``auth`` is True when it refused the
    credentials (a wrong username or password, or none given where some are needed)."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


class NoRunError(MqttBridgeError):
    """The broker holds no run to attach to (or several, and none was named)."""


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    """How to reach a broker. ``password`` is read from a file, never taken from the command
    line (where ``ps`` would show it)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    """CA certificates (PEM) to check the broker's certificate with (None: the system's)."""
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def __repr__(self) -> str:  # never print the password
        return (f"BrokerConfig(url={self.url!r}, ca_file={self.ca_file!r}, "
                f"username={self.username!r}, password={'***' if self.password else None})")


def parse_broker_url(text: str, *, ca_file: Path | None = None, username: str | None = None,
                     password: str | None = None) -> BrokerConfig:
    """``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` as a BrokerConfig, or ConfigError."""
    raw = text.strip()
    if "://" not in raw:
        raise ConfigError(f"--broker: expected mqtt://HOST:PORT or mqtts://HOST:PORT, "
                          f"got {text!r}")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--broker: expected a port from 1 to 65535 in {text!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"--broker: expected the scheme mqtt:// or mqtts://, got "
                          f"{parts.scheme + '://' if parts.scheme else 'none'} in {text!r}")
    if not parts.hostname:
        raise ConfigError(f"--broker: expected a host name in {text!r}")
    if parts.username or parts.password:
        raise ConfigError("--broker: put no credentials in the URL; use --username and "
                          "--password-file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"--broker: expected nothing after HOST:PORT in {text!r}")
    if port == 0:
        raise ConfigError(f"--broker: expected a port from 1 to 65535, got 0 in {text!r}")
    tls, default_port = SCHEMES[scheme]
    if ca_file is not None:
        if not tls:
            raise ConfigError("--tls-ca: needs an mqtts:// broker URL")
        if not ca_file.is_file():
            raise ConfigError(f"--tls-ca: no such file: {ca_file}")
    if password is not None and username is None:
        raise ConfigError("--password-file: needs --username")
    return BrokerConfig(host=parts.hostname, port=port or default_port, tls=tls,
                        ca_file=ca_file, username=username, password=password)


def read_password_file(path: Path) -> str:
    """The password in ``path``: its first line, without the line ending."""
    try:
        size = path.stat().st_size
        if size > MAX_PASSWORD_BYTES:
            raise ConfigError(f"--password-file: {path} is {size} bytes; expected a password "
                              f"of at most {MAX_PASSWORD_BYTES}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--password-file: no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"--password-file: {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"--password-file: cannot read {path} (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--password-file: {path} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise ConfigError(f"--password-file: {path} is empty; expected the password on its "
                          "first line")
    return password


def check_run_id(text: str) -> str:
    """``text`` if it can be a run id (one MQTT topic level), else ConfigError."""
    if not RUN_ID.match(text):
        raise ConfigError(f"--run-id: expected letters, digits, '.', '_' or '-' (at most 64, "
                          f"starting with a letter or digit), got {text!r}")
    return text


def run_id_for(name: str) -> str:
    """A valid run id made from a scenario's name (``my scenario`` -> ``my-scenario``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:64]
    return cleaned or "run"
