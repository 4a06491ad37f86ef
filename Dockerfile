# servegate gateway image: the same image runs the gateway, the migrations and the setup job.

# Build stage: a wheel with the relay's hot modules compiled (mypyc, see setup.py); the compiler stays here.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN SERVEGATE_COMPILE=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# dnsutils gives operators `nslookup` / `dig` inside the container for upstream name checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends dnsutils \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

# Unprivileged runtime user; the prefix holds the pid file, SQLite file and the generated TLS certificate.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/servegate --create-home servegate
WORKDIR /var/lib/servegate

# Inside the container the proxy and the Admin API listen on every interface; compose publishes only the
# proxy ports, so the Admin API is reachable from the host only through the key-auth protected /admin-api route.
ENV SERVEGATE_PREFIX=/var/lib/servegate \
    SERVEGATE_PROXY_LISTEN="0.0.0.0:8000, 0.0.0.0:8443 ssl" \
    SERVEGATE_ADMIN_LISTEN="0.0.0.0:8001"

USER servegate
EXPOSE 8000 8443 8001

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 CMD ["servegate", "health"]

CMD ["servegate", "start"]
