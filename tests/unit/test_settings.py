from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from inventory_service.settings import Settings as InventorySettings
from notification_service.settings import Settings as NotificationSettings
from order_service.settings import Settings as OrderSettings
from payment_service.settings import Settings as PaymentSettings
from saga_orchestrator.settings import Settings as OrchestratorSettings
from shared_domain.runtime import ServiceDefinition, load_settings
from shared_domain.settings import ServiceSettings
from shipping_service.settings import Settings as ShippingSettings

ALL_SETTINGS: list[type[ServiceSettings]] = [
    OrchestratorSettings,
    OrderSettings,
    PaymentSettings,
    InventorySettings,
    ShippingSettings,
    NotificationSettings,
]

KNOBS = [
    (PaymentSettings, "PAYMENT_FAILURE_RATE", "payment_failure_rate"),
    (PaymentSettings, "PAYMENT_REFUND_FAILURE_RATE", "payment_refund_failure_rate"),
    (ShippingSettings, "SHIPPING_FAILURE_RATE", "shipping_failure_rate"),
    (NotificationSettings, "NOTIFICATION_FAILURE_RATE", "notification_failure_rate"),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for cls in ALL_SETTINGS:
        for name, info in cls.model_fields.items():
            monkeypatch.delenv(name.upper(), raising=False)
            if isinstance(info.validation_alias, str):
                monkeypatch.delenv(info.validation_alias, raising=False)


@pytest.mark.parametrize(("cls", "env", "attr"), KNOBS)
@pytest.mark.parametrize("value", ["0.0", "0.5", "1.0"])
def test_failure_rate_accepts_probabilities(
    monkeypatch: pytest.MonkeyPatch, cls: type[ServiceSettings], env: str, attr: str, value: str
) -> None:
    monkeypatch.setenv(env, value)

    assert getattr(cls(), attr) == float(value)


@pytest.mark.parametrize(("cls", "env", "attr"), KNOBS)
@pytest.mark.parametrize("value", ["-0.1", "1.5", "abc", "nan"])
def test_failure_rate_refuses_anything_else(
    monkeypatch: pytest.MonkeyPatch, cls: type[ServiceSettings], env: str, attr: str, value: str
) -> None:
    monkeypatch.setenv(env, value)

    with pytest.raises(ValidationError) as info:
        cls()
    assert [e["loc"] for e in info.value.errors()] == [(env,)]


@pytest.mark.parametrize(("cls", "env", "attr"), KNOBS)
def test_failure_rate_defaults_to_zero(cls: type[ServiceSettings], env: str, attr: str) -> None:
    assert getattr(cls(), attr) == 0.0


@pytest.mark.parametrize("cls", ALL_SETTINGS, ids=lambda c: c.__module__.split(".")[0])
def test_shared_defaults(cls: type[ServiceSettings]) -> None:
    settings = cls()

    assert (settings.db_host, settings.db_port) == ("127.0.0.1", 5432)
    assert (settings.db_user, settings.db_password) == ("postgres", "postgres")
    assert (settings.rabbitmq_host, settings.rabbitmq_port) == ("127.0.0.1", 5672)
    assert (settings.rabbitmq_username, settings.rabbitmq_password) == ("guest", "guest")
    assert settings.rabbitmq_vhost == "/"


@pytest.mark.parametrize(
    ("cls", "port", "database"),
    [
        (OrchestratorSettings, 8000, "orchestrator_db"),
        (OrderSettings, 8001, "order_db"),
        (PaymentSettings, 8002, "payment_db"),
        (InventorySettings, 8003, "inventory_db"),
        (ShippingSettings, 8004, "shipping_db"),
        (NotificationSettings, 8005, "notification_db"),
    ],
)
def test_per_service_defaults(cls: type[ServiceSettings], port: int, database: str) -> None:
    settings = cls()

    assert (settings.port, settings.db_name) == (port, database)
    assert settings.db_display == f"127.0.0.1:5432/{database}"


@pytest.mark.parametrize(
    ("cls", "env"),
    [
        (OrchestratorSettings, "ORCHESTRATOR_PORT"),
        (OrderSettings, "ORDER_SERVICE_PORT"),
        (PaymentSettings, "PAYMENT_SERVICE_PORT"),
        (InventorySettings, "INVENTORY_SERVICE_PORT"),
        (ShippingSettings, "SHIPPING_SERVICE_PORT"),
        (NotificationSettings, "NOTIFICATION_SERVICE_PORT"),
    ],
)
def test_per_service_port_variable(
    monkeypatch: pytest.MonkeyPatch, cls: type[ServiceSettings], env: str
) -> None:
    monkeypatch.setenv(env, "9100")

    assert cls().port == 9100


@pytest.mark.parametrize("cls", [OrderSettings, PaymentSettings], ids=["order", "payment"])
def test_generic_port_variable_does_not_override_the_service_port(
    monkeypatch: pytest.MonkeyPatch, cls: type[ServiceSettings]
) -> None:
    default = cls().port
    monkeypatch.setenv("PORT", "9999")

    assert cls().port == default


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("RABBITMQ_VHOST", "orders")

    settings = PaymentSettings()

    assert (settings.db_host, settings.db_port, settings.rabbitmq_vhost) == (
        "db.internal",
        6543,
        "orders",
    )


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PAYMENT_FAILURE_RATE=0.25\nDB_HOST=from-dotenv\n")

    settings = PaymentSettings()

    assert (settings.payment_failure_rate, settings.db_host) == (0.25, "from-dotenv")


def test_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_HOST=from-dotenv\n")
    monkeypatch.setenv("DB_HOST", "from-env")

    assert PaymentSettings().db_host == "from-env"


@pytest.mark.parametrize(
    ("service", "env"),
    [
        ("payment_service.app", "PAYMENT_FAILURE_RATE"),
        ("payment_service.app", "PAYMENT_REFUND_FAILURE_RATE"),
        ("shipping_service.app", "SHIPPING_FAILURE_RATE"),
        ("notification_service.app", "NOTIFICATION_FAILURE_RATE"),
        ("order_service.app", "ORDER_SERVICE_PORT"),
        ("saga_orchestrator.app", "DB_PORT"),
        ("inventory_service.app", "DB_STATEMENT_LIFETIME"),
    ],
)
def test_load_settings_exits_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, service: str, env: str
) -> None:
    definition: ServiceDefinition[ServiceSettings] = importlib.import_module(service).SERVICE
    monkeypatch.setenv(env, "abc")

    with pytest.raises(SystemExit) as info:
        load_settings(definition)

    message = str(info.value.code)
    assert message.startswith(f"{definition.name}: invalid configuration")
    assert f"{env}='abc'" in message


def test_load_settings_returns_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from payment_service.app import SERVICE

    monkeypatch.setenv("PAYMENT_FAILURE_RATE", "0.3")

    settings = load_settings(SERVICE)

    assert isinstance(settings, PaymentSettings)
    assert settings.payment_failure_rate == 0.3


def test_amqp_url_quotes_the_default_vhost() -> None:
    assert PaymentSettings().amqp_url == "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_amqp_url_quotes_special_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_USERNAME", "us@r")
    monkeypatch.setenv("RABBITMQ_PASSWORD", "p@ss:w/rd#?")
    monkeypatch.setenv("RABBITMQ_HOST", "mq.example")
    monkeypatch.setenv("RABBITMQ_PORT", "5673")
    monkeypatch.setenv("RABBITMQ_VHOST", "saga/test")

    assert PaymentSettings().amqp_url == (
        "amqp://us%40r:p%40ss%3Aw%2Frd%23%3F@mq.example:5673/saga%2Ftest"
    )


def test_amqp_url_plain_vhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_VHOST", "orders")

    assert PaymentSettings().amqp_url.endswith("@127.0.0.1:5672/orders")


def test_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "s3cr@t")
    settings = PaymentSettings()

    url = settings.database_url()

    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.database) == ("127.0.0.1", 5432, "payment_db")
    assert url.password == "s3cr@t"
    assert settings.database_url("postgres").database == "postgres"


@pytest.mark.parametrize(("env", "allowed"), [("LOG_LEVEL", "'INFO'"), ("LOG_FORMAT", "'json'")])
def test_an_unknown_log_level_or_format_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, env: str, allowed: str
) -> None:
    from order_service.app import SERVICE

    monkeypatch.setenv(env, "loud")
    with pytest.raises(SystemExit) as info:
        load_settings(SERVICE)
    message = str(info.value.code)
    assert f"{env}=" in message and allowed in message


def test_log_level_and_format_are_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    settings = PaymentSettings()
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")


@pytest.mark.parametrize(
    ("value", "kept"),
    [("10/second", "10/second"), (" 100 per minute ", "100 per minute"), ("", None)],
)
def test_the_order_rate_limit_takes_a_rate_or_nothing(value: str, kept: str | None) -> None:
    assert OrderSettings(ORDER_RATE_LIMIT=value).order_rate_limit == kept
    assert OrderSettings().order_rate_limit is None  # off unless set


@pytest.mark.parametrize("value", ["10", "fast", "10/fortnight", "0/second"])
def test_the_order_rate_limit_refuses_what_is_not_a_rate(value: str) -> None:
    with pytest.raises(ValidationError, match="is not a rate: say how many per what"):
        OrderSettings(ORDER_RATE_LIMIT=value)
    with pytest.raises(ValidationError, match="ORDER_RATE_LIMIT_BY"):
        OrderSettings(ORDER_RATE_LIMIT_BY="everyone")
