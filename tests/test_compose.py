"""The container setup: the contract of docker-compose.yml, the Dockerfile, a compose
binary's own validation of the file (where one is installed), and the init-db script run
against a real PostgreSQL under throwaway names."""

from __future__ import annotations

import importlib
import os
import re
import secrets
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared_domain.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
INIT_DB_SCRIPT = ROOT / "scripts" / "init-db" / "01-create-databases.sh"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class App:
    package: str
    port_env: str
    port: int
    database: str


APPS = {
    "saga-orchestrator": App("saga_orchestrator", "ORCHESTRATOR_PORT", 8000, "orchestrator_db"),
    "order-service": App("order_service", "ORDER_SERVICE_PORT", 8001, "order_db"),
    "payment-service": App("payment_service", "PAYMENT_SERVICE_PORT", 8002, "payment_db"),
    "inventory-service": App("inventory_service", "INVENTORY_SERVICE_PORT", 8003, "inventory_db"),
    "shipping-service": App("shipping_service", "SHIPPING_SERVICE_PORT", 8004, "shipping_db"),
    "notification-service": App(
        "notification_service", "NOTIFICATION_SERVICE_PORT", 8005, "notification_db"
    ),
}
INFRA = ("postgres", "rabbitmq")
OBSERVABILITY = ("prometheus", "grafana", "jaeger")

# service -> {variable: default}; each must be overridable from the shell.
CHAOS_DEFAULTS = {
    "payment-service": {"PAYMENT_FAILURE_RATE": 0.1},
    "shipping-service": {"SHIPPING_FAILURE_RATE": 0.05},
    "notification-service": {"NOTIFICATION_FAILURE_RATE": 0.02},
}

# `docker compose up --scale <service>=3` must not clash on a host port.
MIN_REPLICAS = 3

# The public entry point: users curl it on its own port.
ENTRY_POINT = "order-service"


# --- reading the compose file ----------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$\$"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def _with_defaults(value: Any) -> Any:
    """Compose interpolation as if no variable were set: `${X:-d}` gives d. The structural
    tests judge the file's defaults, whatever the shell running them has exported."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            if match.group("op") in (":-", "-"):
                return match.group("arg")
            return ""

        return _INTERPOLATION.sub(replace, value)
    if isinstance(value, dict):
        return {k: _with_defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_defaults(v) for v in value]
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE.name} is missing"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = _with_defaults(raw_compose)
    return resolved


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if isinstance(command, str):
        return command.split()
    return [str(part) for part in command or []]


def _healthcheck_test(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, list):
        return " ".join(str(part) for part in test)
    return str(test or "")


@dataclass(frozen=True)
class Published:
    """One `ports:` entry: host ports first..last, or both None for an ephemeral port."""

    service: str
    target: int
    first: int | None
    last: int | None

    @property
    def fixed(self) -> bool:
        return self.first is not None and self.first == self.last

    @property
    def size(self) -> int:
        return 0 if self.first is None or self.last is None else self.last - self.first + 1


def _host_range(service: str, target: int, published: Any) -> Published:
    text = "" if published is None else str(published).strip()
    if not text:
        return Published(service, target, None, None)
    first, _, last = text.partition("-")
    return Published(service, target, int(first), int(last or first))


def _published(service: str, entry: Any) -> Published:
    if isinstance(entry, dict):  # long syntax
        return _host_range(service, int(entry["target"]), entry.get("published"))
    spec = str(entry).split("/", 1)[0]  # drop the protocol
    if spec.startswith("["):  # [ipv6]:published:target
        spec = spec.split("]", 1)[1].lstrip(":")
    parts = spec.rsplit(":", 2)
    target = int(parts[-1])
    published = parts[-2] if len(parts) >= 2 else None
    return _host_range(service, target, published)


def _all_published(compose: dict[str, Any]) -> list[Published]:
    return [
        _published(name, entry)
        for name, service in compose["services"].items()
        for entry in service.get("ports") or []
    ]


# --- the compose file's contract ------------------------------------------------------


def test_compose_file_lists_all_services_and_no_version_key(raw_compose: dict[str, Any]) -> None:
    assert "version" not in raw_compose, "the Compose Specification has no top-level version"
    assert set(raw_compose["services"]) == set(APPS) | set(INFRA) | set(OBSERVABILITY)


def test_prometheus_grafana_and_jaeger_get_the_repositorys_files(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def mounts(name: str) -> dict[str, str]:
        volumes = [str(v) for v in services[name].get("volumes", [])]
        return dict(v.split(":")[:2] for v in volumes if v.startswith("./"))

    prometheus = mounts("prometheus")
    assert prometheus["./observability/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert prometheus["./observability/alerts.yml"] == "/etc/prometheus/alerts.yml"
    config = yaml.safe_load((ROOT / "observability" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    scraped = {
        sd["names"][0]: sd["port"]
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
    }
    assert scraped == {name: app.port for name, app in APPS.items()}, "every replica of each"
    grafana = mounts("grafana")
    assert grafana["./observability/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert grafana["./observability/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    for source in grafana:
        assert (ROOT / source).is_dir(), source
    targets = {(p.service, p.target) for p in _all_published(compose)}
    assert {("prometheus", 9090), ("grafana", 3000), ("jaeger", 16686)} <= targets
    for name in APPS:
        env = _environment(services[name])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert env["LOG_FORMAT"] == "json"


def test_postgres_runs_the_init_scripts_and_has_a_healthcheck(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert str(postgres["image"]).startswith("postgres:16-alpine")
    assert _environment(postgres)["POSTGRES_PASSWORD"] == "postgres"
    volumes = [str(v) for v in postgres.get("volumes", [])]
    assert any(v.startswith("./scripts/init-db:/docker-entrypoint-initdb.d") for v in volumes), (
        volumes
    )
    named = [v.split(":", 1)[0] for v in volumes if not v.startswith((".", "/"))]
    assert named, "PostgreSQL keeps its data in a named volume"
    assert set(named) <= set(compose.get("volumes") or {})
    assert "pg_isready" in _healthcheck_test(postgres)


def test_rabbitmq_publishes_amqp_and_the_management_ui(compose: dict[str, Any]) -> None:
    rabbitmq = compose["services"]["rabbitmq"]
    assert str(rabbitmq["image"]).startswith("rabbitmq:3.13-management")
    targets = {p.target for p in _all_published(compose) if p.service == "rabbitmq"}
    assert {5672, 15672} <= targets
    health = _healthcheck_test(rabbitmq)
    assert "rabbitmq-diagnostics" in health
    assert "ping" in health


@pytest.mark.parametrize("name", sorted(APPS))
def test_app_service(compose: dict[str, Any], name: str) -> None:
    app = APPS[name]
    service = compose["services"][name]

    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    assert context in (".", "./"), "every service is built from the one Dockerfile"
    assert _command(service) == ["python", "-m", app.package]
    assert service.get("restart") == "unless-stopped"

    depends_on = service.get("depends_on")
    assert isinstance(depends_on, dict), "depends_on needs the long form to carry a condition"
    for dependency in INFRA:
        assert depends_on.get(dependency, {}).get("condition") == "service_healthy", dependency

    env = _environment(service)
    expected = {
        "DB_HOST": "postgres",
        "DB_USER": "saga",
        "DB_PASSWORD": "saga",
        "DB_NAME": app.database,
        "RABBITMQ_HOST": "rabbitmq",
        "RABBITMQ_USERNAME": "guest",
        "RABBITMQ_PASSWORD": "guest",
        "HOST": "0.0.0.0",
        app.port_env: str(app.port),
    }
    assert {k: env.get(k) for k in expected} == expected

    health = service.get("healthcheck") or {}
    assert not health.get("disable")
    probe = _healthcheck_test(service)
    assert f"http://127.0.0.1:{app.port}/api/v1/health" in probe
    assert "urllib" in probe, "the slim image has no curl"


@pytest.mark.parametrize("name", sorted(APPS))
def test_app_service_matches_its_settings(compose: dict[str, Any], name: str) -> None:
    """The variable names and defaults in the compose file are the ones the code reads."""
    app = APPS[name]
    settings = importlib.import_module(f"{app.package}.settings").Settings
    fields = settings.model_fields
    assert fields["port"].validation_alias == app.port_env
    assert fields["port"].default == app.port
    assert fields["db_name"].default == app.database
    aliases = {f.validation_alias for f in fields.values()}
    env = _environment(compose["services"][name])
    unknown = {v for v in set(env) - aliases if not v.startswith("OTEL_")}  # the SDK's
    assert not unknown, f"{name} sets variables its settings do not read: {sorted(unknown)}"


def test_database_names_are_distinct_and_as_listed(compose: dict[str, Any]) -> None:
    names = [_environment(compose["services"][name]).get("DB_NAME", "") for name in APPS]
    assert len(set(names)) == len(names), names
    assert sorted(names) == sorted(app.database for app in APPS.values())


def test_chaos_defaults_are_overridable_from_the_shell(raw_compose: dict[str, Any]) -> None:
    for name, knobs in CHAOS_DEFAULTS.items():
        env = _environment(raw_compose["services"][name])
        for variable, default in knobs.items():
            raw = env.get(variable, "")
            match = re.fullmatch(rf"\$\{{{variable}:-(?P<default>[^}}]*)\}}", raw)
            assert match, f"{name}: {variable} should read ${{{variable}:-{default}}}, not {raw!r}"
            assert float(match["default"]) == default, f"{name}: {variable} defaults to {raw}"


def test_host_ports_do_not_clash_when_services_are_scaled(compose: dict[str, Any]) -> None:
    published = _all_published(compose)

    fixed = [p for p in published if p.fixed]
    fixed_ports = [p.first for p in fixed]
    assert len(set(fixed_ports)) == len(fixed_ports), (
        f"a fixed host port is published twice: {fixed}"
    )

    for p in published:
        if p.service in APPS:
            assert p.first is None or p.size >= MIN_REPLICAS, (
                f"{p.service} publishes host port(s) {p.first}-{p.last} for {p.target}: "
                f"--scale {p.service}={MIN_REPLICAS} would clash; publish a range of at "
                f"least {MIN_REPLICAS} ports or no host port"
            )

    # A replica of one service must never take a host port meant for another.
    taken = [(p.first, p.last, p) for p in published if p.first is not None and p.last is not None]
    for i, (a_first, a_last, a) in enumerate(taken):
        for b_first, b_last, b in taken[i + 1 :]:
            assert a_last < b_first or b_last < a_first, f"host ports overlap: {a} and {b}"

    entry = [p for p in published if p.service == ENTRY_POINT]
    app = APPS[ENTRY_POINT]
    assert any(p.target == app.port and p.first == app.port for p in entry), (
        f"{ENTRY_POINT} should be reachable on localhost:{app.port}: {entry}"
    )


def test_postgres_admits_every_connection_of_scaled_services(compose: dict[str, Any]) -> None:
    """Each app process may hold DB_POOL_SIZE + DB_READ_POOL_SIZE connections; with the
    entry point at its ten host ports and every other service at MIN_REPLICAS, they must
    all fit, besides the connections PostgreSQL keeps for superusers."""
    command = compose["services"]["postgres"].get("command") or []
    settings = [arg for arg in command if str(arg).startswith("max_connections=")]
    assert settings, f"postgres should set max_connections for scaled services: {command}"
    max_connections = int(str(settings[-1]).partition("=")[2])

    defaults = ServiceSettings.model_fields
    per_process = defaults["db_pool_size"].default + defaults["db_read_pool_size"].default
    entry_ports = max(p.size for p in _all_published(compose) if p.service == ENTRY_POINT)
    processes = entry_ports + MIN_REPLICAS * (len(APPS) - 1)
    superuser_reserved = 3
    assert processes * per_process + superuser_reserved <= max_connections, (
        f"{processes} app processes x {per_process} connections need more than "
        f"max_connections={max_connections}"
    )


def test_init_script_creates_every_database_and_the_role(compose: dict[str, Any]) -> None:
    assert INIT_DB_SCRIPT.is_file()
    assert os.access(INIT_DB_SCRIPT, os.X_OK), "the init script needs its executable bit"
    text = INIT_DB_SCRIPT.read_text()
    assert text.startswith("#!")
    for name in APPS:
        database = _environment(compose["services"][name])["DB_NAME"]
        assert re.search(rf"\b{re.escape(database)}\b", text), f"{database} is not created"
    postgres_env = _environment(compose["services"]["postgres"])
    app_user = {_environment(compose["services"][name])["DB_USER"] for name in APPS}
    assert app_user == {postgres_env.get("SAGA_DB_USER", "saga")}


def test_dockerfile_builds_every_package_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert re.search(r"PYTHONUNBUFFERED=1", text)
    assert "pip install --no-cache-dir ." in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the services run as a non-root user"
    copied = " ".join(re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for required in ["pyproject.toml", "alembic.ini", *packages]:
        assert re.search(rf"(^|\s){re.escape(required)}(\s|$)", copied), f"{required} is not copied"

    ignored = DOCKERIGNORE.read_text().split()
    for entry in (".venv", ".git", "tests"):
        assert entry in ignored, f".dockerignore should leave out {entry}"


# --- a compose binary's own validation ------------------------------------------------

COMPOSE_BINARIES = {"docker-compose": ["docker-compose"], "docker compose": ["docker", "compose"]}


@pytest.fixture(params=sorted(COMPOSE_BINARIES))
def compose_cli(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    argv = COMPOSE_BINARIES[request.param]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"`{request.param}` is not installed (Debian: apt-get install docker-compose)")
    if len(argv) > 1:
        probe = subprocess.run(
            [*argv, "version"], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.returncode != 0:
            pytest.skip(f"`{request.param}` is not available: the compose plugin is missing")
    # An empty env file: a developer's .env must not change what the file says.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return [*argv, "--env-file", str(env_file), "-f", str(COMPOSE_FILE)]


def _cli_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    for knobs in CHAOS_DEFAULTS.values():
        for variable in knobs:
            env.pop(variable, None)
    env.update(overrides)
    return env


def test_compose_binary_accepts_the_file(compose_cli: list[str]) -> None:
    result = subprocess.run(
        [*compose_cli, "config", "-q"],
        cwd=ROOT,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout


def test_compose_binary_takes_chaos_rates_from_the_shell(compose_cli: list[str]) -> None:
    result = subprocess.run(
        [*compose_cli, "config"],
        cwd=ROOT,
        env=_cli_env(PAYMENT_FAILURE_RATE="0.5"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout
    services = yaml.safe_load(result.stdout)["services"]
    assert float(_environment(services["payment-service"])["PAYMENT_FAILURE_RATE"]) == 0.5
    assert float(_environment(services["shipping-service"])["SHIPPING_FAILURE_RATE"]) == 0.05
    rate = _environment(services["notification-service"])["NOTIFICATION_FAILURE_RATE"]
    assert float(rate) == 0.02


# --- the init-db script against a real PostgreSQL ---------------------------------------

PASSWORD = "composetest"
PG_ENV = {
    "PGHOST": os.environ.get("PGHOST", "127.0.0.1"),
    "PGPORT": os.environ.get("PGPORT", "5432"),
    "PGUSER": os.environ.get("PGUSER", "postgres"),
}


def _psql(
    sql: str, *, database: str = "postgres", user: str | None = None, password: str = ""
) -> str:
    env = {**os.environ, **PG_ENV}
    argv = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql]
    if user:
        argv[1:1] = ["-U", user]
    if password:
        env["PGPASSWORD"] = password
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def throwaway_names(compose: dict[str, Any]) -> Iterator[tuple[str, str, list[str]]]:
    """A unique prefix and role, so the run never touches real databases; all of it is
    dropped afterwards."""
    if shutil.which("psql") is None or shutil.which("bash") is None:
        pytest.skip("psql and bash are needed to run the init-db script")
    try:
        _psql("SELECT 1")
    except RuntimeError as exc:
        where = f"{PG_ENV['PGHOST']}:{PG_ENV['PGPORT']} as {PG_ENV['PGUSER']}"
        pytest.skip(f"no PostgreSQL superuser connection at {where}: {exc}")

    prefix = f"composetest_{secrets.token_hex(4)}_"
    role = f"{prefix}role"
    databases = [
        prefix + _environment(compose["services"][name])["DB_NAME"] for name in sorted(APPS)
    ]
    try:
        yield prefix, role, databases
    finally:
        for database in databases:
            _psql(f'DROP DATABASE IF EXISTS "{database}"')
        _psql(f'DROP ROLE IF EXISTS "{role}"')


def test_init_script_runs_twice_against_postgres(
    throwaway_names: tuple[str, str, list[str]],
) -> None:
    prefix, role, databases = throwaway_names
    # One database already exists, owned by someone else, as when a service created it
    # before the script ran: the script must hand it over, not fail.
    _psql(f'CREATE DATABASE "{databases[0]}"')

    env = {
        **os.environ,
        **PG_ENV,
        "DB_PREFIX": prefix,
        "SAGA_DB_USER": role,
        "SAGA_DB_PASSWORD": PASSWORD,
    }
    env.pop("PGDATABASE", None)
    for attempt in (1, 2):
        result = subprocess.run(
            ["bash", str(INIT_DB_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"run {attempt}: {result.stderr}"

    rows = _psql("SELECT datname || '|' || pg_get_userbyid(datdba) FROM pg_database")
    owners = dict(line.split("|", 1) for line in rows.splitlines() if line.startswith(prefix))
    assert owners == {database: role for database in databases}

    assert _psql(f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'").strip() == "t"
    # The role can build its schema in its own database, as the migrations do.
    _psql("CREATE TABLE composetest (id int)", database=databases[-1], user=role, password=PASSWORD)
