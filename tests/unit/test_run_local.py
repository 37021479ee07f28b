"""`make run`'s warning when the processes it starts could run PostgreSQL out of
connections."""

from __future__ import annotations

import re

from scripts.run_local import connection_shortfall
from shared_domain.settings import ServiceSettings


def settings(pool: int, read_pool: int) -> ServiceSettings:
    return ServiceSettings.model_validate({"DB_POOL_SIZE": pool, "DB_READ_POOL_SIZE": read_pool})


def test_no_warning_while_every_pool_fits() -> None:
    assert connection_shortfall(settings(10, 3), processes=6, free=78) is None


def test_a_shortfall_names_the_demand_and_a_pool_size_that_fits() -> None:
    warning = connection_shortfall(settings(10, 3), processes=12, free=96)

    assert warning is not None
    assert "12 processes may open up to 156" in warning
    assert "96 free" in warning
    suggested = int(re.search(r"DB_POOL_SIZE=(\d+)", warning)[1])  # type: ignore[index]
    assert suggested == 5
    assert 12 * (suggested + 3) <= 96 < 12 * (suggested + 1 + 3)


def test_when_no_pool_size_fits_only_the_server_can_give() -> None:
    warning = connection_shortfall(settings(10, 3), processes=40, free=96)

    assert warning is not None
    assert "DB_POOL_SIZE=" not in warning
    assert "raise the server's max_connections" in warning
