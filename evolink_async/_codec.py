"""The one cattrs converter of the SDK, and the decoders of the service's answers.

Decoding is liberal, as the API notes ask: unknown fields are ignored, informational fields
of an unexpected type become ``None`` instead of failing the whole answer, and a status the SDK
does not know becomes ``TaskStatus.UNKNOWN``. Only what the SDK cannot work without (a task
``id``) makes decoding fail, and then always with ``DecodeError``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from .errors import DecodeError
from .models import (
    TERMINAL_STATUSES,
    Credits,
    CreditsBalance,
    Task,
    TaskErrorInfo,
    TaskInfo,
    TaskPage,
    TaskStatus,
    TaskSummary,
    Usage,
    UsageCost,
)

__all__ = [
    "converter",
    "decode_account_credits",
    "decode_credits",
    "decode_task",
    "decode_task_page",
    "decode_tasks",
    "decode_upload",
    "loads_json",
    "make_converter",
    "same_state",
]


#: the floats of small whole numbers (estimated times, credits), made once
_WHOLE = [float(n) for n in range(4096)]


def _opt_float(value: Any, _: Any = None) -> float | None:
    if type(value) is int and 0 <= value < len(_WHOLE):
        return _WHOLE[value]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range: as unusable as a wrong type
            return None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


#: integers a float holds exactly: within it, int(float(n)) == n
_EXACT = 2**53


def _opt_int(value: Any, _: Any = None) -> int | None:
    if type(value) is int and -_EXACT <= value <= _EXACT:  # no round trip through float
        return value
    number = _opt_float(value)
    return None if number is None else int(number)


def _opt_bool(value: Any, _: Any = None) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


#: strings up to this long are interned: the same model, status, type or billing rule in 10 000
#: tasks in flight is then one string, not 10 000 (CPython frees an interned string that
#: nothing holds any more, so unusual values do not pile up)
_INTERN_MAX = 40


def _opt_str(value: Any, _: Any = None) -> str | None:
    if type(value) is str:
        return sys.intern(value) if len(value) <= _INTERN_MAX else value
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _code(value: Any, _: Any = None) -> int | str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        return value
    return _opt_str(value)


def _str_tuple(value: Any, _: Any = None) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _task_id(value: Any, _: Any = None) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"task id must be a non-empty string, got {value!r:.80}")
    return value


def _status(value: Any, _: Any = None) -> TaskStatus:
    return value if isinstance(value, TaskStatus) else TaskStatus.parse(value)


#: nested objects decoded lately, each kept once: the ``task_info`` and ``usage`` of 10 000
#: tasks in flight are mostly equal, and frozen, so equal ones are one object
_SHARED: dict[Any, Any] = {}
_SHARED_MAX = 1024


def _shared(value: Any) -> Any:
    try:
        return _SHARED.setdefault(value, value)
    except TypeError:  # a field that is not hashable: not shared
        return value
    finally:
        if len(_SHARED) > _SHARED_MAX:
            _SHARED.clear()


def _sub(conv: cattrs.Converter, cls: type[Any]) -> Any:
    """Structure an optional nested object; anything but a JSON object becomes None. The
    generated function of ``cls`` is called directly, on the object as it is (it only reads)."""
    structure = conv.get_structure_hook(cls)

    def hook(value: Any, _: Any) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        return _shared(structure(value, cls))

    return hook


def _raw_status(value: Any, _: Any = None) -> str:
    return (_opt_str(value) or "") if isinstance(value, str) else ""


def _error(value: Any, _: Any) -> TaskErrorInfo | None:
    if isinstance(value, str):
        return TaskErrorInfo(code=None, message=value)
    if not isinstance(value, Mapping):
        return None
    return TaskErrorInfo(code=_code(value.get("code")), message=_opt_str(value.get("message")))


def make_converter() -> cattrs.Converter:
    """Build the SDK's converter (never the global one)."""
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(float | None, _opt_float)
    conv.register_structure_hook(int | None, _opt_int)
    conv.register_structure_hook(bool | None, _opt_bool)
    conv.register_structure_hook(str | None, _opt_str)
    conv.register_structure_hook(int | str | None, _code)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _str_tuple)
    conv.register_structure_hook(TaskStatus, _status)
    conv.register_structure_hook(TaskInfo | None, _sub(conv, TaskInfo))
    conv.register_structure_hook(UsageCost | None, _sub(conv, UsageCost))
    conv.register_structure_hook(Usage | None, _sub(conv, Usage))
    conv.register_structure_hook(CreditsBalance | None, _sub(conv, CreditsBalance))
    conv.register_structure_hook(TaskErrorInfo | None, _error)
    # ``raw_status`` is the ``status`` string as sent, ``status`` its parsed value: both read
    # the one key, so an answer is structured as it is, never copied first
    for cls in (Task, TaskSummary):
        structure = cattrs.gen.make_dict_structure_fn(
            cls,
            conv,
            id=cattrs.override(struct_hook=_task_id),
            raw_status=cattrs.override(rename="status", struct_hook=_raw_status),
        )
        conv.register_structure_hook(cls, structure)
    conv.register_unstructure_hook(TaskStatus, lambda status: status.value)
    return conv


converter = make_converter()
_STRUCTURE_TASK = converter.get_structure_hook(Task)
_STRUCTURE_SUMMARY = converter.get_structure_hook(TaskSummary)
_TASK_INFO = converter.get_structure_hook(TaskInfo | None)
_USAGE = converter.get_structure_hook(Usage | None)


def _direct_task(o: Mapping[str, Any]) -> Task:
    """What the converter's function for ``Task`` makes, each field through the same hook
    (a field absent and a field null give the same default), without its per-field
    bookkeeping: a task is decoded at every read that saw a change. Raises what a hook
    raises; ``decode_task`` then asks the converter, for its error message."""
    get = o.get
    raw = get("status")
    return Task(
        id=_task_id(o["id"]),
        status=TaskStatus.parse(raw),
        raw_status=_raw_status(raw),
        progress=_opt_int(get("progress")),
        created=_opt_int(get("created")),
        model=_opt_str(get("model")),
        object=_opt_str(get("object")),
        type=_opt_str(get("type")),
        task_info=_TASK_INFO(get("task_info"), TaskInfo),
        usage=_USAGE(get("usage"), Usage),
        results=_str_tuple(get("results")),
        error=_error(get("error"), None),
    )


def loads_json(body: bytes | str, what: str) -> Any:
    """Parse a JSON body, raising ``DecodeError`` with a short excerpt when it is not JSON."""
    try:
        if type(body) is bytes and b"\x00" not in body:  # UTF-8: no pass to detect UTF-16/32
            text = body.decode()
            return json.loads(text[1:] if text[:1] == "\ufeff" else text)
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        reason = "is nested too deeply" if isinstance(exc, RecursionError) else "is not JSON"
        raise DecodeError(f"{what} {reason}", excerpt=text[:200]) from None


def same_state(known: Task, data: Any) -> bool:
    """Whether ``data`` (a task object as JSON) shows ``known`` as it was: the same id, the
    same status (a status that is not final), progress and ``estimated_time``. Then
    ``known`` stands for the answer and nothing needs decoding (a poll that saw no change)."""
    if known.status in TERMINAL_STATUSES:
        return False
    if type(data) is not dict and not isinstance(data, Mapping):
        return False
    if data.get("status") != known.raw_status or data.get("id") != known.id:
        return False
    if _opt_int(data.get("progress")) != known.progress:
        return False
    info = data.get("task_info")
    estimated = (
        _opt_float(info.get("estimated_time"))
        if type(info) is dict or isinstance(info, Mapping)
        else None
    )
    return estimated == known.estimated_time


def decode_task(data: Any, known: Task | None = None) -> Task:
    """Decode a task object (POST answer, GET answer or callback body). With ``known`` (the
    task as last seen), an answer in the same state (``same_state``) gives ``known`` back
    undecoded: no new object for a poll that saw no change."""
    if known is not None and same_state(known, data):
        return known
    if type(data) is not dict and not isinstance(data, Mapping):
        raise DecodeError(f"expected a task object, got {type(data).__name__}")
    try:
        task = _direct_task(data)
    except Exception:
        try:
            task = _STRUCTURE_TASK(data, Task)
        except Exception as exc:  # cattrs wraps hook errors in groups; one SDK error comes out
            detail = "; ".join(_leaves(exc)) or type(exc).__name__
            raise DecodeError(f"invalid task object ({detail})") from None
    return task if known is None or known.id != task.id else _share(known, task)


def _share(known: Task, task: Task) -> Task:
    """``task`` holding ``known``'s id string and its parts that did not change: a task in
    flight keeps one copy of each, whatever the number of reads."""
    parts: dict[str, Any] = {}
    if task.task_info == known.task_info:
        parts["task_info"] = known.task_info
    if task.usage == known.usage:
        parts["usage"] = known.usage
    if task.created == known.created:
        parts["created"] = known.created
    return attrs.evolve(task, id=known.id, **parts)


def decode_tasks(data: Any, known: Mapping[str, Task] | None = None) -> list[Task]:
    """Decode ``POST /v1/tasks/batch``: the tasks under ``data``, in one pass. A ``data``
    that is not an array counts as empty, and an item that is not a valid task is left out
    (the caller confirms a missing id by itself), as the gateway's own client does. With
    ``known`` (tasks as last seen, by id), an item in the same state is its known task."""
    inner = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(inner, list):
        return []
    tasks = []
    for item in inner:
        previous = None
        if known is not None and isinstance(item, Mapping):
            item_id = item.get("id")
            previous = known.get(item_id) if isinstance(item_id, str) else None
        try:
            tasks.append(decode_task(item, previous))
        except DecodeError:
            continue
    return tasks


def decode_task_page(data: Any, page: int, page_size: int) -> TaskPage:
    """Decode a page of ``GET /v1/tasks``; missing fields default to no items, total 0, and
    the page and size asked for. Items that are not valid are left out."""
    if not isinstance(data, Mapping):
        raise DecodeError(f"expected a task list object, got {type(data).__name__}")
    items: list[TaskSummary] = []
    raw_items = data.get("data")
    for raw in raw_items if isinstance(raw_items, list) else []:
        if not isinstance(raw, Mapping):
            continue
        try:
            items.append(_STRUCTURE_SUMMARY(raw, TaskSummary))
        except Exception:  # one bad item does not hide the page
            continue
    return TaskPage(
        items=tuple(items),
        total=_opt_int(data.get("total")) or 0,
        page=_opt_int(data.get("page")) or page,
        page_size=_opt_int(data.get("page_size")) or page_size,
    )


def decode_credits(data: Any) -> Credits:
    """Decode GET /v1/credits (the balance is under ``data``)."""
    if not isinstance(data, Mapping):
        raise DecodeError(f"expected a credits object, got {type(data).__name__}")
    inner = data.get("data", data)
    if not isinstance(inner, Mapping):
        raise DecodeError("credits answer has no 'data' object")
    return converter.structure(dict(inner), Credits)


def decode_upload(data: Any) -> str:
    """The ``data.file_url`` of a Files API upload answer; ``success: false`` (even with HTTP
    200) or an answer without an http(s) ``file_url`` is a DecodeError."""
    if not isinstance(data, Mapping):
        raise DecodeError(f"expected an upload answer object, got {type(data).__name__}")
    if data.get("success") is not True:
        message = data.get("msg") or data.get("message")
        said = f": {message[:200]}" if isinstance(message, str) and message else ""
        raise DecodeError(f"the upload was refused (success is not true){said}")
    inner = data.get("data")
    url = inner.get("file_url") if isinstance(inner, Mapping) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise DecodeError("the upload answer has no http(s) data.file_url")
    return url


def decode_account_credits(data: Any) -> Credits:
    """Decode GET /v1/credits strictly, as ``get_credits`` needs it: ``success: false``, or an
    answer without both ``data.user`` (the account) and ``data.token`` (this key), is an
    error even with HTTP 200 (the message is the answer's ``message``)."""
    if not isinstance(data, Mapping):
        raise DecodeError(f"expected a credits object, got {type(data).__name__}")
    message = data.get("message")
    said = f": {message[:200]}" if isinstance(message, str) and message else ""
    if data.get("success") is False:
        raise DecodeError(f"the credits answer says success=false{said}")
    inner = data.get("data")
    if not isinstance(inner, Mapping) or not all(
        isinstance(inner.get(part), Mapping) for part in ("user", "token")
    ):
        raise DecodeError(f"the credits answer lacks data.user or data.token{said}")
    return decode_credits(data)


def _leaves(exc: BaseException) -> list[str]:
    subs = getattr(exc, "exceptions", None)
    if isinstance(subs, (list, tuple)):
        out: list[str] = []
        for sub in subs:
            out.extend(_leaves(sub))
        return out
    if isinstance(exc, KeyError) and exc.args:  # a required field is absent
        return [f"missing required field {exc.args[0]!r}"[:120]]
    return [str(exc)[:120]]
