"""Old name of :mod:`evolink_async.callbacks`; kept so that existing imports go on working."""

from .callbacks import DEFAULT_MAX_BODY, CallbackReceiver, ReceiverStats, TaskWaker, parse_listen

__all__ = ["DEFAULT_MAX_BODY", "CallbackReceiver", "ReceiverStats", "TaskWaker", "parse_listen"]
