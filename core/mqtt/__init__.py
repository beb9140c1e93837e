"""The MQTT bridge: one running backend, many viewers.

``server.MqttServer`` publishes a local session's run under ``stackyard/<run>/`` and applies the
commands viewers send; ``remote.RemoteSession`` is a Session fed from a broker, which the app
runs on unchanged; ``broker.EmbeddedBroker`` is the amqtt broker ``serve`` starts when given none;
``topics`` spells the layout (docs/mqtt.md describes it); ``config`` checks what a user types.
Importing this package does not import aiomqtt or amqtt; its modules do.
"""

from __future__ import annotations

from stackyard.core.mqtt.config import (
    DEFAULT_BROKER,
    BrokerConfig,
    ConfigError,
    ConnectError,
    MqttBridgeError,
    NoRunError,
    check_run_id,
    parse_broker_url,
    read_password_file,
    run_id_for,
)

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
    "run_id_for",
]
