"""model-router's configuration: the record `/schemas/plugins/model-router` shows, and the checks that tie its
parts together (every backend an entry names must be one of `backends`; aliases name models, not aliases).

Errors come back in Kong's shape: a field's own problem under its name (`{"config": {"backends": "length must
be at least 1"}}`), a problem between fields under the record's `@entity` (`{"config": {"@entity": [...]}}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servegate.schema.fields import Field

BALANCING = ("least-outstanding", "round-robin")


def _pattern(value: str) -> str | None:
    if value == "*" or (value.endswith("*") and "*" not in value[:-1]):
        return None
    return f"invalid pattern '{value}': expected a prefix followed by one '*' (as in 'llama-*'), or '*' alone"


def _name(description: str) -> Field:
    return Field(type="string", len_min=1, description=description)


def _backend_list(description: str) -> Field:
    return Field(type="array", len_min=1, elements=_name("a name of config.backends"), description=description)


DISCOVERY = Field(
    type="record",
    required=True,
    fields=(
        ("enabled", Field(type="boolean", required=True, default=True,
                          description="Ask every backend for GET /v1/models and route the models it lists.")),
        ("refresh_interval", Field(type="number", required=True, default=30, between=(1, 86400),
                                   description="Seconds between two asks of one backend (5 at most while it "
                                               "fails). A 404 for a model the backend listed asks at once.")),
        ("timeout", Field(type="number", required=True, default=5, between=(0.1, 120),
                          description="Seconds one ask may take, connection included.")),
    ),
    description="How the model lists of the backends are learned.",
)

def _map(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name)
    return value if isinstance(value, Mapping) else {}


def _unique_backends(config: Mapping[str, Any]) -> str | None:
    seen: set[str] = set()
    for name in config.get("backends") or ():
        if name in seen:
            return f"backend '{name}' is listed twice in config.backends"
        seen.add(name)
    return None


def _known_backends(config: Mapping[str, Any]) -> str | None:
    backends = config.get("backends")
    known = set(backends) if isinstance(backends, list) else set()
    for field, what in (("models", "model"), ("patterns", "pattern")):
        for key, names in _map(config, field).items():
            for name in names if isinstance(names, list) else ():
                if isinstance(name, str) and name not in known:
                    return f"{what} '{key}' names backend '{name}', which is not in config.backends"
    return None


def _aliases(config: Mapping[str, Any]) -> str | None:
    aliases = _map(config, "aliases")
    models = _map(config, "models")
    for alias, model in aliases.items():
        if alias in models:
            return f"'{alias}' is both an alias and an entry of config.models"
        if model == alias:
            return f"alias '{alias}' names itself"
        if model in aliases:
            return f"alias '{alias}' names the alias '{model}': an alias names a model"
    return None


CONFIG = Field(
    type="record",
    required=True,
    fields=(
        ("backends", Field(type="array", required=True, len_min=1, elements=_name("a service or upstream name"),
                           description="The services (or upstreams) this route may send a request to, by name. "
                                       "A service whose host is an upstream is balanced over its targets.")),
        ("models", Field(type="map", keys=_name("a model id, as clients send it"),
                         values=_backend_list("the backends serving it"),
                         description="Explicit entries: model -> backends. They win over discovery and stay "
                                     "when a backend is down.")),
        ("aliases", Field(type="map", keys=_name("the name clients send"), values=_name("the model it stands for"),
                          description="alias -> model: a request for the alias goes where the model goes, with "
                                      "`model` rewritten in its JSON body.")),
        ("patterns", Field(type="map", keys=Field(type="string", len_min=1, checks=(_pattern,),
                                                  description="'prefix*', or '*' for any model"),
                           values=_backend_list("the backends serving the models it matches"),
                           description="Models no entry, alias or discovered list knows: the longest matching "
                                       "prefix decides.")),
        ("discovery", DISCOVERY),
        ("balancing", Field(type="string", required=True, default="least-outstanding", one_of=BALANCING,
                            description="How a model served by several backends picks one: the fewest requests "
                                        "in flight in this worker, or each in turn.")),
        ("models_endpoint", Field(type="boolean", required=True, default=True,
                                  description="Answer GET /v1/models (and /v1/models/{id}) with the merged list.")),
    ),
    checks=(_unique_backends, _known_backends, _aliases),
    description="Routes OpenAI-style requests by the `model` of their body.",
)
