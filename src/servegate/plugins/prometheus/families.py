"""The metric families the prometheus plugin exposes: names, types, labels and buckets, declared once.

Kong's (kong/plugins/prometheus/exporter.lua, 3.9) keep Kong's names, label names and order, bucket bounds and
help texts, so that Kong's dashboards and alerts read servegate's `/metrics` unchanged. The LLM families Kong lacks
follow OpenTelemetry's GenAI conventions in their Prometheus form (gen_ai.server.time_to_first_token ->
`gen_ai_server_time_to_first_token_seconds`, attribute gen_ai.request.model -> label `gen_ai_request_model`),
with the bucket advice of the conventions (TTFT extended to 60 s, as Envoy AI Gateway does: long prompts on a busy
server pass 10 s). servegate's own are prefixed `servegate_`.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Family:
    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# -- Kong 3.9 ------------------------------------------------------------------------------------------------
KONG_LATENCY_BUCKETS = (1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0,
                        3000.0, 6000.0)
UPSTREAM_LATENCY_BUCKETS = (25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0,
                            30000.0, 60000.0)
AI_LLM_PROVIDER_LATENCY_BUCKETS = (250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 4500.0,
                                   5000.0, 10000.0, 30000.0, 60000.0)

_ROUTE = ("service", "route", "workspace")
_AI = ("ai_provider", "ai_model", "cache_status", "vector_db", "embeddings_provider", "embeddings_model")

HTTP_REQUESTS = Family("kong_http_requests_total", COUNTER, "HTTP status codes per consumer/service/route in Kong",
                       ("service", "route", "code", "source", "workspace", "consumer"))
KONG_LATENCY = Family("kong_kong_latency_ms", HISTOGRAM,
                      "Latency added by Kong and enabled plugins for each service/route in Kong",
                      _ROUTE, KONG_LATENCY_BUCKETS)
UPSTREAM_LATENCY = Family("kong_upstream_latency_ms", HISTOGRAM,
                          "Latency added by upstream response for each service/route in Kong",
                          _ROUTE, UPSTREAM_LATENCY_BUCKETS)
REQUEST_LATENCY = Family("kong_request_latency_ms", HISTOGRAM,
                         "Total latency incurred during requests for each service/route in Kong",
                         _ROUTE, UPSTREAM_LATENCY_BUCKETS)
# A counter without `_total`, as Kong names it (the reason servegate writes the text format itself: prometheus
# client libraries append `_total` to every counter).
BANDWIDTH = Family("kong_bandwidth_bytes", COUNTER, "Total bandwidth (ingress/egress) throughput in bytes",
                   ("service", "route", "direction", "workspace", "consumer"))
AI_REQUESTS = Family("kong_ai_llm_requests_total", COUNTER, "AI requests total per ai_provider in Kong",
                     (*_AI, "workspace"))
AI_COST = Family("kong_ai_llm_cost_total", COUNTER, "AI requests cost per ai_provider/cache in Kong", (*_AI, "workspace"))
AI_TOKENS = Family("kong_ai_llm_tokens_total", COUNTER, "AI tokens total per ai_provider/cache in Kong",
                   (*_AI, "token_type", "workspace"))
AI_LATENCY = Family("kong_ai_llm_provider_latency_ms", HISTOGRAM,
                    "LLM response Latency for each AI plugins per ai_provider in Kong",
                    (*_AI, "workspace"), AI_LLM_PROVIDER_LATENCY_BUCKETS)

# Node-level gauges, filled at scrape time.
DATASTORE_REACHABLE = Family("kong_datastore_reachable", GAUGE, "Datastore reachable from Kong, 0 is unreachable")
NODE_INFO = Family("kong_node_info", GAUGE, "Kong Node metadata information", ("node_id", "version"))
UPSTREAM_TARGET_HEALTH = Family(
    "kong_upstream_target_health", GAUGE,
    "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, "
    "value is 1 when state is populated.",
    ("upstream", "target", "address", "state", "subsystem"))
WORKER_MEMORY = Family("kong_memory_workers_lua_vms_bytes", GAUGE, "Allocated bytes in worker Lua VM",
                       ("node_id", "pid", "kong_subsystem"))
METRIC_ERRORS = Family("kong_nginx_metric_errors_total", COUNTER, "Number of nginx-lua-prometheus errors")

# -- OpenTelemetry GenAI (semantic conventions 1.41, Prometheus names) --------------------------------------------
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                15.0, 20.0, 30.0, 45.0, 60.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
                 16777216.0, 67108864.0)

# One request's LLM labels: the operation, who served it (provider: the backend's service or upstream name;
# server address and port: the target), the models, and the consumer (only with per_consumer: else "").
GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model",
         "server_address", "server_port", "consumer")

TOKEN_USAGE = Family("gen_ai_client_token_usage", HISTOGRAM,
                     "Number of input and output tokens used per request (estimated=\"true\": the backend reported "
                     "no usage and servegate counted it)",
                     (*GENAI, "gen_ai_token_type", "estimated"), TOKEN_BUCKETS)
REQUEST_DURATION = Family("gen_ai_server_request_duration_seconds", HISTOGRAM,
                          "Time from the request's arrival to the end of its response",
                          (*GENAI, "error_type"), DURATION_BUCKETS)
TTFT = Family("gen_ai_server_time_to_first_token_seconds", HISTOGRAM,
              "Time from the request's arrival to the first content event of a successful stream",
              GENAI, TTFT_BUCKETS)
TPOT = Family("gen_ai_server_time_per_output_token_seconds", HISTOGRAM,
              "Time per output token after the first of a successful stream", GENAI, TPOT_BUCKETS)

# -- servegate -----------------------------------------------------------------------------------------------
_STREAM = ("gen_ai_operation_name", "gen_ai_request_model", "server_address", "server_port", "consumer")
STREAMS_IN_FLIGHT = Family("servegate_llm_streams_in_flight", GAUGE,
                           "Streaming LLM requests in progress (server_address is empty until the response head)",
                           _STREAM)
CLIENT_ABORTS = Family("servegate_llm_client_aborts_total", COUNTER,
                       "LLM requests whose client went away (or whose stream broke) before the response ended",
                       _STREAM)

# What a worker accumulates (in this order in its per-worker file); the node-level gauges are made at scrape.
WORKER_FAMILIES = (HTTP_REQUESTS, KONG_LATENCY, UPSTREAM_LATENCY, REQUEST_LATENCY, BANDWIDTH, AI_REQUESTS, AI_COST,
                   AI_TOKENS, AI_LATENCY, TOKEN_USAGE, REQUEST_DURATION, TTFT, TPOT, CLIENT_ABORTS,
                   STREAMS_IN_FLIGHT)
NODE_FAMILIES = (DATASTORE_REACHABLE, NODE_INFO, UPSTREAM_TARGET_HEALTH, WORKER_MEMORY, METRIC_ERRORS)
ALL = {f.name: f for f in (*WORKER_FAMILIES, *NODE_FAMILIES)}
