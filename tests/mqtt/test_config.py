"""What a user types about a broker, checked before anything connects; and the topic names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackyard.core.mqtt.config import (
    BrokerConfig,
    ConfigError,
    check_run_id,
    parse_broker_url,
    read_password_file,
    run_id_for,
)
from stackyard.core.mqtt.topics import Topics, metric_text, topic_level, viewer_name


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://broker.example:1884", BrokerConfig(host="broker.example", port=1884)),
    ("mqtt://10.0.0.5", BrokerConfig(host="10.0.0.5", port=1883)),
    ("MQTTS://host", BrokerConfig(host="host", port=8883, tls=True)),
    ("mqtt://[::1]:1883/", BrokerConfig(host="::1", port=1883)),
])
def test_broker_urls(url: str, expected: BrokerConfig) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("localhost:1883", "expected mqtt://HOST:PORT or mqtts://HOST:PORT, got 'localhost:1883'"),
    ("http://host:80", "expected the scheme mqtt:// or mqtts://, got http://"),
    ("mqtt://:1883", "expected a host name in 'mqtt://:1883'"),
    ("mqtt://host:0", "expected a port from 1 to 65535, got 0"),
    ("mqtt://host:65536", "expected a port from 1 to 65535 in 'mqtt://host:65536'"),
    ("mqtt://host:port", "expected a port from 1 to 65535 in 'mqtt://host:port'"),
    ("mqtt://user:pw@host", "put no credentials in the URL"),
    ("mqtt://host/topic", "expected nothing after HOST:PORT"),
])
def test_bad_broker_urls_are_one_line(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_broker_url(url)
    text = str(caught.value)
    assert text.startswith("--broker: ") and message in text and "\n" not in text


def test_tls_and_credential_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until connecting\n")
    assert parse_broker_url("mqtts://h", ca_file=ca).ca_file == ca
    with pytest.raises(ConfigError, match="--tls-ca: needs an mqtts:// broker URL"):
        parse_broker_url("mqtt://h", ca_file=ca)
    with pytest.raises(ConfigError, match="--tls-ca: no such file"):
        parse_broker_url("mqtts://h", ca_file=tmp_path / "none.pem")
    with pytest.raises(ConfigError, match="--password-file: needs --username"):
        parse_broker_url("mqtt://h", password="x")
    config = parse_broker_url("mqtt://h", username="u", password="secret")
    assert "secret" not in repr(config) and config.password == "secret"


def test_password_files(tmp_path: Path) -> None:
    good = tmp_path / "pw"
    good.write_text("s3cret \nignored\n")
    assert read_password_file(good) == "s3cret "
    empty = tmp_path / "empty"
    empty.write_text("\n")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    for path, message in ((tmp_path / "none", "no such file"), (empty, "is empty"),
                          (big, "expected a password of at most 4096"),
                          (tmp_path, "is a directory")):
        with pytest.raises(ConfigError, match=message):
            read_password_file(path)


def test_run_ids_are_one_topic_level() -> None:
    assert check_run_id("class-1.a_b") == "class-1.a_b"
    for bad in ("", "a/b", "a+b", "#", "-x", "x" * 65, "a b"):
        with pytest.raises(ConfigError, match="--run-id: expected letters"):
            check_run_id(bad)
    assert run_id_for("my scenario/2") == "my-scenario-2" and run_id_for("///") == "run"


def test_topic_names() -> None:
    topics = Topics("r1")
    assert (topics.status, topics.cmd, topics.reply) == \
        ("stackyard/r1/status", "stackyard/r1/cmd", "stackyard/r1/reply")
    assert topics.metric("app/1", "cpu") == "stackyard/r1/metrics/app_1/cpu"
    assert Topics.run_of("stackyard/r1/status") == "r1" and Topics.run_of("other/x") == ""
    assert topic_level("a+b#c d") == "a_b_c_d"
    assert [metric_text(x) for x in (3.0, 0.1234567, -2.5, 1e20)] == \
        ["3", "0.123457", "-2.5", "1e+20"]
    assert viewer_name("remote:alice@lab") == "alice@lab"
    assert viewer_name("remote:\x1b[31mmallory/#") == "31mmallory"
    assert viewer_name("") == "anonymous" and len(viewer_name("x" * 100)) == 32


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "default", "--broker", "tcp://h"], "--broker: expected the scheme"),
    (["serve", "default", "--broker", "mqtt://h:70000"], "--broker: expected a port"),
    (["serve", "default", "--username", "u"], "--username: needs --broker"),
    (["serve", "default", "--run-id", "a/b"], "--run-id: expected letters"),
    (["serve", "nowhere"], "nowhere"),
    (["serve", "default", "--speed", "500"], "expected a speed between 0.25 and 100"),
    (["attach", "--broker", "mqtt://h", "--password-file", "/nonexistent"],
     "--password-file: no such file"),
    (["attach", "--broker", "mqtts://h", "--tls-ca", "/nonexistent"], "--tls-ca: no such file"),
    (["attach", "--broker", "mqtt://127.0.0.1:1"], "cannot connect to mqtt://127.0.0.1:1"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "stackyard.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stderr.startswith("stackyard: ")
