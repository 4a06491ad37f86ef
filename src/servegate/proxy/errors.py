"""Gateway-generated responses: Kong's error messages and Accept-negotiated bodies (kong-compat §5.5)."""

from __future__ import annotations

from servegate import SERVER_TOKEN

MESSAGES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    411: "Length required",
    412: "Precondition failed",
    413: "Payload too large",
    414: "URI too long",
    415: "Unsupported media type",
    417: "Expectation failed",
    426: "Upgrade required",
    429: "Too many requests",
    500: "An unexpected error occurred",
    501: "Not implemented",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}

# A request answered before its body was read keeps its connection if at most this much body is left to drop.
DISCARD_LIMIT = 1024 * 1024


def body_discardable(expect: bool, chunked: bool, content_length: bytes) -> bool:
    """Whether the unread rest of a request body answered early is small enough to read and drop (keep-alive
    kept): not when the client may wait for 100-continue or the size is unknown (chunked)."""
    if expect or chunked:
        return False
    try:
        return int(content_length or 0) <= DISCARD_LIMIT
    except ValueError:
        return False


NO_ROUTE = "no Route matched with those values"
NO_SERVICE = "no Service found with those values"
HEADER_TOO_LARGE = "Request header or cookie too large"

REASONS: dict[int, str] = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified", 307: "Temporary Redirect",
    308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Not Allowed", 408: "Request Time-out", 409: "Conflict", 411: "Length Required",
    412: "Precondition Failed", 413: "Request Entity Too Large", 414: "Request-URI Too Large",
    415: "Unsupported Media Type", 417: "Expectation Failed", 426: "Upgrade Required",
    429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out",
}

JSON = "application/json; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"


def message_for(status: int) -> str:
    return MESSAGES.get(status) or f"The upstream server responded with {status}"


def _pick(media: str) -> str | None:
    media = media.strip().lower()
    if media in ("application/json", "*/*", "application/*"):
        return JSON
    if media == "text/html":
        return HTML
    if media in ("application/xml", "text/xml"):
        return XML
    if media == "text/plain" or media.startswith("text/"):
        return PLAIN
    return None


def negotiate(accept: str | None, content_type: str | None = None, default: str | None = None) -> str:
    """Content type of an error body: best `Accept` entry (highest q), else request Content-Type, else default."""
    if accept:
        best: tuple[float, int, str] | None = None
        for pos, part in enumerate(accept.split(",")):
            media, _, params = part.partition(";")
            q = 1.0
            for p in params.split(";"):
                k, _, v = p.strip().partition("=")
                if k == "q":
                    try:
                        q = float(v)
                    except ValueError:
                        q = 0.0
            ct = _pick(media)
            if ct is not None and q > 0 and (best is None or q > best[0]):
                best = (q, pos, ct)
        if best is not None:
            return best[2]
    if content_type:
        ct = _pick(content_type.partition(";")[0])
        if ct is not None:
            return ct
    if default:
        return _pick(default) or JSON
    return JSON


def render(ctype: str, message: str, request_id: str) -> bytes:
    if ctype == JSON:
        body = '{\n  "message":"' + message + '",\n  "request_id":"' + request_id + '"\n}'
    elif ctype == PLAIN:
        body = f"{message}\nrequest_id: {request_id}\n"
    elif ctype == HTML:
        body = (
            "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n"
            f"  </head>\n  <body>\n    <h1>Error</h1>\n    <p>{message}.</p>\n"
            f"    <p>request_id: {request_id}</p>\n  </body>\n</html>\n"
        )
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n'
            f"  <message>{message}</message>\n  <requestid>{request_id}</requestid>\n</error>\n"
        )
    return body.encode()


def response_bytes(
    status: int,
    body: bytes,
    ctype: str | None,
    request_id: str,
    latency_ms: int,
    *,
    keep_alive: bool,
    extra: list[tuple[str, str]] | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete gateway-generated HTTP/1.1 response (Server + X-Kong-Response-Latency + X-Kong-Request-Id)."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"]
    if ctype:
        lines.append(f"Content-Type: {ctype}\r\n")
    lines.append(f"Content-Length: {len(body)}\r\n")
    if not (extra and any(n.lower() == "connection" for n, _ in extra)):
        lines.append("Connection: keep-alive\r\n" if keep_alive else "Connection: close\r\n")
    if extra:
        for name, value in extra:
            lines.append(f"{name}: {value}\r\n")
    lines.append(f"Server: {SERVER_TOKEN}\r\nX-Kong-Response-Latency: {latency_ms}\r\n")
    if request_id:
        lines.append(f"X-Kong-Request-Id: {request_id}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1")
    return head if head_only else head + body
