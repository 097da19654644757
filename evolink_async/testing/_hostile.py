"""The gateway's request ids, and the echoes of a careless or hostile gateway.

Every API answer carries ``X-Request-Id`` (``req-<n>``), and an error body also its
``error.request_id``, as the gateway does (``request_ids=False`` turns both off). The echo
knobs make the simulator behave as the attacks of the idempotency issue did:

* ``echo_key_header``: ``X-Request-Id`` echoes the caller's bearer token (the API key);
* ``echo_key_body``: error bodies carry the token in their message, JSON-escaped
  (``"\\u0073\\u006b-..."``), so a byte-level search for the key finds nothing;
* ``echo_callback_url``: a create with a ``callback_url`` is refused with a 400 whose
  message holds that URL (and with it the receiver's secret path segment).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ._config import SimulatorConfig
from ._errors import ApiError

__all__ = ["Echoes"]

_PLACEHOLDER = "\x00TOKEN\x00"
REQUEST_ID_HEADER = "X-Request-Id"


def _token(request: web.Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


def _json_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


class Echoes:
    """Decorates the simulator's answers: request ids, and the echo knobs."""

    __slots__ = ("_config", "_numbers")

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._numbers = itertools.count(1)

    def check_create(self, body: Mapping[str, Any]) -> None:
        """``echo_callback_url``: refuse a create with a callback URL, echoing it."""
        url = body.get("callback_url")
        if self._config.echo_callback_url and isinstance(url, str) and url:
            raise ApiError.invalid("callback_url", f"callback_url {url} is not reachable")

    def request_id(self, request: web.Request) -> str | None:
        """A new request's id: ``req-<n>``, or the caller's token when ``echo_key_header``."""
        if self._config.echo_key_header and _token(request):
            return _token(request)
        return f"req-{next(self._numbers)}" if self._config.request_ids else None

    def error_response(self, request: web.Request, error: ApiError) -> web.Response:
        """The JSON answer of ``error``, with its request id (body and header) and the body
        echo if on."""
        body = json.loads(json.dumps(error.body))
        request_id = self.request_id(request)
        headers = dict(error.headers)
        if request_id is not None:
            headers[REQUEST_ID_HEADER] = request_id
            if self._config.request_ids:
                body["error"]["request_id"] = request_id
        token = _token(request)
        if self._config.echo_key_body and token:
            body["error"]["message"] += f" (you sent {_PLACEHOLDER})"
        text = json.dumps(body).replace(json.dumps(_PLACEHOLDER)[1:-1], _json_escaped(token))
        return web.Response(
            text=text, status=error.status, headers=headers, content_type="application/json"
        )

    def finish(self, request: web.Request, response: web.StreamResponse) -> None:
        """Give an answer not sent yet its request id header, unless it has one."""
        if response.prepared or REQUEST_ID_HEADER in response.headers:
            return
        request_id = self.request_id(request)
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
