"""The proxy data plane (hot path): no framework, asyncio protocols + httptools + uvloop.

server.py     ProxyServer: listeners (plain/TLS, SO_REUSEPORT), one periodic timeout sweep, graceful stop
client.py     downstream HTTP/1.1 connection: parsing, limits, keep-alive, pipelining in order
exchange.py   one request: routing, plugin phases, upstream attempts and retries, relay, timeouts, endings
upstream.py   upstream connection protocol (response head parsing, raw body relay) and keep-alive pool
headers.py    header rewriting both ways, built as bytes; trusted peers
phases.py     bridge to the plugin phase plan (only used when plugins apply)
protocols.py  https-only route enforcement
errors.py     gateway-generated responses (Kong messages, Accept-negotiated bodies)
accesslog.py  buffered access log without secrets
tls.py        server certificate (generated once under <prefix>/ssl/) and contexts
router.py, paths.py: routing and path handling (see their docstrings)
"""
