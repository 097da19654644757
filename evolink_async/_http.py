"""Old home of the transport; kept so that existing imports go on working."""

from ._retry import RetryPolicy, parse_retry_after, set_testing
from ._transport import RetryEvent, Transport, error_from_response

__all__ = [
    "RetryEvent",
    "RetryPolicy",
    "Transport",
    "error_from_response",
    "parse_retry_after",
    "set_testing",
]
