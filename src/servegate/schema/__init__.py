"""Entity declarations, validation, Kong error shapes and form coercion."""

from servegate.schema.entities import (
    CONSUMERS,
    ENTITIES,
    PLUGINS,
    ROUTES,
    SERVICES,
    TARGETS,
    UPSTREAMS,
    declared,
    get_entity,
    register_entity,
)
from servegate.schema.errors import DaoError
from servegate.schema.fields import NO_DEFAULT, Entity, Field

__all__ = [
    "CONSUMERS",
    "ENTITIES",
    "NO_DEFAULT",
    "PLUGINS",
    "ROUTES",
    "SERVICES",
    "TARGETS",
    "UPSTREAMS",
    "DaoError",
    "Entity",
    "Field",
    "declared",
    "get_entity",
    "register_entity",
]
