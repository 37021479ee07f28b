from pydantic import Field, field_validator

from saga_orchestrator.domain import FORWARD, SagaPolicy, Step, StepTimeout
from shared_domain.backoff import Backoff
from shared_domain.settings import ServiceSettings


def _step_timeout(step: str, default: float) -> float:
    return Field(
        default,
        gt=0,
        le=3600,
        validation_alias=f"{step.upper()}_STEP_TIMEOUT",
        description=f"seconds to wait for the {step} step's reply before re-sending",
    )


def _step_attempts(step: str) -> int | None:
    return Field(
        None,
        ge=1,
        le=50,
        validation_alias=f"{step.upper()}_STEP_MAX_ATTEMPTS",
        description=f"sends of the {step} command before giving up (default STEP_MAX_ATTEMPTS)",
    )


def _service_url(name: str, port: int) -> str:
    env = f"{name.upper()}_SERVICE_URL"
    return Field(
        f"http://127.0.0.1:{port}",
        validation_alias=env,
        description=f"{env}: the {name} service's base URL, for the console's gateway",
    )


class Settings(ServiceSettings):
    port: int = Field(8000, ge=1, le=65535, validation_alias="ORCHESTRATOR_PORT")
    db_name: str = Field("orchestrator_db", validation_alias="DB_NAME")

    compensation_max_attempts: int = Field(
        5, ge=1, le=100, validation_alias="COMPENSATION_MAX_ATTEMPTS"
    )
    compensation_retry_delay: float = Field(
        0.5, gt=0, le=600, validation_alias="COMPENSATION_RETRY_DELAY"
    )
    compensation_retry_max_delay: float = Field(
        30.0, gt=0, le=3600, validation_alias="COMPENSATION_RETRY_MAX_DELAY"
    )

    # Step timeouts: a command with no reply in time is re-sent (same message id) with
    # growing, jittered waits; after its attempts the step is given up and compensated.
    payment_step_timeout: float = _step_timeout("payment", 10.0)
    inventory_step_timeout: float = _step_timeout("inventory", 10.0)
    shipping_step_timeout: float = _step_timeout("shipping", 10.0)
    # The notification service retries delivery itself before it answers.
    notification_step_timeout: float = _step_timeout("notification", 30.0)
    step_max_attempts: int = Field(3, ge=1, le=50, validation_alias="STEP_MAX_ATTEMPTS")
    payment_step_max_attempts: int | None = _step_attempts("payment")
    inventory_step_max_attempts: int | None = _step_attempts("inventory")
    shipping_step_max_attempts: int | None = _step_attempts("shipping")
    notification_step_max_attempts: int | None = _step_attempts("notification")
    step_resend_max_wait: float = Field(
        120.0, gt=0, le=86_400, validation_alias="STEP_RESEND_MAX_WAIT"
    )
    timeout_check_interval: float = Field(
        1.0, gt=0, le=60, validation_alias="TIMEOUT_CHECK_INTERVAL"
    )

    # Where the console's gateway reaches the other services (their own HTTP APIs).
    order_service_url: str = _service_url("order", 8001)
    payment_service_url: str = _service_url("payment", 8002)
    inventory_service_url: str = _service_url("inventory", 8003)
    shipping_service_url: str = _service_url("shipping", 8004)
    notification_service_url: str = _service_url("notification", 8005)

    @field_validator(
        "order_service_url",
        "payment_service_url",
        "inventory_service_url",
        "shipping_service_url",
        "notification_service_url",
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def service_urls(self) -> dict[str, str]:
        return {
            f"{name}_service": getattr(self, f"{name}_service_url")
            for name in ("order", "payment", "inventory", "shipping", "notification")
        }

    def saga_policy(self) -> SagaPolicy:
        timeouts: dict[Step, StepTimeout] = {}
        for step in FORWARD:
            attempts = getattr(self, f"{step.value}_step_max_attempts")
            timeouts[step] = StepTimeout(
                seconds=getattr(self, f"{step.value}_step_timeout"),
                max_attempts=attempts or self.step_max_attempts,
            )
        return SagaPolicy(
            compensation_max_attempts=self.compensation_max_attempts,
            compensation_backoff=Backoff(
                self.compensation_retry_delay, self.compensation_retry_max_delay, jitter=0.25
            ),
            timeouts=timeouts,
            resend_max_wait=self.step_resend_max_wait,
        )
