"""Admin API reply helpers: Kong's JSON bodies and an exception that carries a finished reply."""

from __future__ import annotations

from typing import Any

import orjson

from servegate.admin.http import Response
from servegate.schema.errors import DATABASE_ERROR, DaoError
from servegate.store.outage import StoreUnavailable

JSON_TYPE = "application/json; charset=utf-8"


def json_reply(status: int, body: Any) -> Response:
    return Response(status, orjson.dumps(body), {"Content-Type": JSON_TYPE})


def message_reply(status: int, message: str) -> Response:
    return json_reply(status, {"message": message})


def empty_reply(status: int) -> Response:
    return Response(status)


def dao_error_reply(err: DaoError) -> Response:
    if isinstance(err, StoreUnavailable):  # the database is down or locked: retry later, not a server bug
        return json_reply(err.http_status, err.to_json())
    if err.code == DATABASE_ERROR:
        return message_reply(500, "An unexpected error occurred")
    return json_reply(err.http_status, err.to_json())


class Reply(Exception):
    """Raised anywhere in a handler to end the request with this response (404 parent, 415...)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def not_found() -> Reply:
    return Reply(message_reply(404, "Not found"))


def method_not_allowed() -> Reply:
    return Reply(message_reply(405, "Method not allowed"))


def bad_request(message: str) -> Reply:
    return Reply(message_reply(400, message))
