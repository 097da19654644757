"""The simulator's knobs, in one frozen, checked object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import attrs
from attrs import validators as v

from ._catalog import DEFAULT_FAILURE_CODES, DEFAULT_MODELS, ModelSpec

__all__ = [
    "CREATE_FAULTS",
    "DEFAULT_API_KEY",
    "TIME_SCALE_HEADER",
    "CreateFault",
    "SimulatorConfig",
]

CreateFault = Literal["500", "502", "503", "520", "522", "524", "drop", "timeout"]
CREATE_FAULTS: tuple[CreateFault, ...] = get_args(CreateFault)

DEFAULT_API_KEY = "sk-evo-simulator-key"
#: the header on which the simulator states its time scale (the real gateway never sends it)
TIME_SCALE_HEADER = "X-Evolink-Simulator-Time-Scale"

_ONCE: int | None = 1
_rate = [v.instance_of(float), v.ge(0.0), v.le(1.0)]
_positive = [v.instance_of(float), v.gt(0.0)]
_non_negative = [v.instance_of(float), v.ge(0.0)]


def _range(_: object, attribute: attrs.Attribute[tuple[float, float]], value: object) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and 0 <= value[0] <= value[1]):
        raise ValueError(f"{attribute.name} must be a (low, high) pair, 0 <= low <= high")


def _optional_positive_int(
    _: object, attribute: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be None or an integer >= 1")


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """Every knob of the simulator. Durations are simulated seconds unless they say *real*.

    Randomness (timings and every fault) is drawn from ``seed``: same seed and same requests,
    same outcomes. Task-level draws depend only on the seed and the task's creation number;
    request-level faults on the seed and the request's arrival number.
    """

    # where and who
    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port
    api_key: str = DEFAULT_API_KEY
    seed: int = 0
    #: real seconds per simulated second (0.01: a "300 s" task takes 3 real s)
    time_scale: float = attrs.field(default=1.0, converter=float, validator=_positive)
    #: state ``time_scale`` on every API answer (the X-Evolink-Simulator-Time-Scale header), so
    #: that a client adopts it; False: a client must be told (as before)
    state_time_scale: bool = True
    #: keep the tasks in this file (JSON lines): a simulator started again on it continues
    #: the timeline and answers for the earlier one's tasks (``--simulate`` resumes)
    state_path: str | None = None
    models: Mapping[str, ModelSpec] = DEFAULT_MODELS

    # timing of a task (simulated seconds, uniform in [low, high])
    queue_delay: tuple[float, float] = attrs.field(default=(0.0, 30.0), validator=_range)
    #: generation time of the model's shortest clip; longer clips take sqrt(duration/shortest)x
    generation_time: tuple[float, float] = attrs.field(default=(60.0, 300.0), validator=_range)
    #: estimated_time = the task's real queue + generation time, off by up to this fraction
    estimate_error: float = attrs.field(default=0.1, converter=float, validator=_rate)

    # limits (per key)
    rate_limit: int | None = attrs.field(default=None, validator=_optional_positive_int)
    rate_window: float = attrs.field(default=1.0, converter=float, validator=_positive)  # real s
    max_concurrent: int | None = attrs.field(default=None, validator=_optional_positive_int)
    credits: float = attrs.field(default=1_000_000.0, converter=float, validator=_non_negative)
    #: what the service charges against its own price table (2.0: twice the table's price,
    #: in credits_reserved and the final charge)
    charge_factor: float = attrs.field(default=1.0, converter=float, validator=_non_negative)
    #: a completed task's final charge (usage.credits_used) against what it reserved
    final_charge_factor: float = attrs.field(default=1.0, converter=float, validator=_non_negative)
    #: this key's own total limit (402 key_quota_exhausted past it); None: none
    key_limit: float | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(float),
        validator=v.optional(_non_negative),
    )
    #: this key's daily limit (402 key_daily_quota_exhausted past it); None: none
    daily_limit: float | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(float),
        validator=v.optional(_non_negative),
    )
    #: simulated seconds between daily resets (86 400: midnight UTC on a real-time clock)
    daily_period: float = attrs.field(default=86_400.0, converter=float, validator=_positive)
    reset_timezone: str = "UTC"

    # task failures (fractions of tasks; they add up)
    failure_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    failure_codes: tuple[str, ...] = attrs.field(
        default=DEFAULT_FAILURE_CODES, converter=tuple, validator=v.min_len(1)
    )
    retryable_failure_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    fatal_failure_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    #: fraction of tasks cancelled while running (refunded), reported as ``cancel_style`` says
    cancel_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    #: how a cancelled task reads: status ``cancelled`` (Evolink's own client) or ``failed`` with
    #: code ``request_cancelled`` (the docs; the default)
    cancel_style: Literal["cancelled", "failed"] = attrs.field(
        default="failed", validator=v.in_(("cancelled", "failed"))
    )

    # task reads
    #: ``POST /v1/tasks/batch`` exists; False answers it 404 (a gateway without it)
    batch_reads: bool = True

    # transport faults (fractions of API requests)
    error_5xx_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    #: of those 5xx, the fraction answered like a proxy: HTML or empty body, not JSON
    html_error_fraction: float = attrs.field(default=0.5, converter=float, validator=_rate)
    slow_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    slow_seconds: float = attrs.field(default=5.0, converter=float, validator=_non_negative)
    ghost_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)

    # idempotency keys (see _creates): the gateway's ledger, and faults after a create
    #: honour ``Idempotency-Key`` (False: the header is ignored, as behind a stripping proxy)
    idempotency: bool = True
    #: the first N repeats of each key are answered ``paid_outcome_unknown`` (HTTP 409)
    outcome_unknown_replays: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    #: a create that is taken (or replayed), then answered with this instead of the task:
    #: an HTTP status ("500", "502", "503", "520", "522", "524"), "drop" (the connection is
    #: cut) or "timeout" (the answer comes after ``slow_seconds`` real seconds)
    create_fault: CreateFault | None = attrs.field(
        default=None, validator=v.optional(v.in_(CREATE_FAULTS))
    )
    #: the fraction of creates that get ``create_fault``
    create_fault_rate: float = attrs.field(default=1.0, converter=float, validator=_rate)
    #: at most this many faulted answers per prompt (None: every one, a persistent fault)
    create_fault_limit: int | None = attrs.field(default=_ONCE, validator=_optional_positive_int)

    # request ids and echoes of a careless gateway (see _hostile.py)
    #: every API answer carries X-Request-Id (and an error body error.request_id)
    request_ids: bool = True
    #: X-Request-Id echoes the caller's API key
    echo_key_header: bool = False
    #: error bodies echo the caller's API key, JSON-escaped (\u0073\u006b-...)
    echo_key_body: bool = False
    #: a create with a callback_url gets a 400 whose message holds the URL (and its secret)
    echo_callback_url: bool = False

    # result files
    #: each task's clip is made for it (its duration, aspect ratio and colour: testing/_clip.py);
    #: False serves the one packaged 1 s sample to every task
    per_task_clips: bool = attrs.field(default=True, validator=v.instance_of(bool))
    link_ttl: float = attrs.field(default=86_400.0, converter=float, validator=_positive)
    #: fraction of tasks whose FIRST result download fails
    download_fail_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    #: how it fails: cut halfway after a full Content-Length, a 503, or those two in turn
    download_fail_mode: Literal["alternate", "truncate", "503"] = attrs.field(
        default="alternate", validator=v.in_(("alternate", "truncate", "503"))
    )

    # callbacks
    callback_drop_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    callback_timeout: float = attrs.field(default=10.0, converter=float, validator=_positive)
    callback_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    #: accept http:// and private/loopback callback hosts (to call a local receiver)
    allow_insecure_callbacks: bool = False

    def __attrs_post_init__(self) -> None:
        total = (
            self.failure_rate
            + self.retryable_failure_rate
            + self.fatal_failure_rate
            + self.cancel_rate
        )
        if total > 1.0:
            raise ValueError(f"the failure rates add up to {total} > 1")
        if self.error_5xx_rate + self.slow_rate + self.ghost_rate > 1.0:
            raise ValueError("error_5xx_rate + slow_rate + ghost_rate must be <= 1")
