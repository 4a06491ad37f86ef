"""The prometheus plugin's configuration: Kong 3.9's fields, defaults and descriptions (kong/plugins/prometheus/
schema.lua). Every family switch is off by default, as in Kong: an instance with the defaults records nothing per
request and only makes `/metrics` show the node's gauges and the families other instances record."""

from __future__ import annotations

from servegate.schema.fields import Field


def _switch(description: str) -> Field:
    return Field(type="boolean", default=False, description=description)


CONFIG = Field(
    type="record",
    required=True,
    fields=(
        ("per_consumer", _switch(
            "A boolean value that determines if per-consumer metrics should be collected. If enabled, the "
            "`kong_http_requests_total` and `kong_bandwidth_bytes` metrics fill in the consumer label when "
            "available.")),
        ("status_code_metrics", _switch(
            "A boolean value that determines if status code metrics should be collected. If enabled, "
            "`http_requests_total`, `stream_sessions_total` metrics will be exported.")),
        ("ai_metrics", _switch(
            "A boolean value that determines if ai metrics should be collected. If enabled, the "
            "`ai_llm_requests_total`, `ai_llm_cost_total` and `ai_llm_tokens_total` metrics will be exported.")),
        ("latency_metrics", _switch(
            "A boolean value that determines if latency metrics should be collected. If enabled, "
            "`kong_latency_ms`, `upstream_latency_ms` and `request_latency_ms` metrics will be exported.")),
        ("bandwidth_metrics", _switch(
            "A boolean value that determines if bandwidth metrics should be collected. If enabled, "
            "`bandwidth_bytes` and `stream_sessions_total` metrics will be exported.")),
        ("upstream_health_metrics", _switch(
            "A boolean value that determines if upstream metrics should be collected. If enabled, "
            "`upstream_target_health` metric will be exported.")),
    ),
)
