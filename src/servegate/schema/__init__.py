"""Entity declarations, validation, Kong error shapes and form coercion."""

from servegate.schema.entities import (
    CONSUMERS,
    ENTITIES,
    KEYAUTH_CREDENTIALS,
    PLUGINS,
    ROUTES,
    SERVICES,
    get_entity,
)
from servegate.schema.errors import DaoError
from servegate.schema.fields import NO_DEFAULT, Entity, Field

__all__ = [
    "CONSUMERS",
    "ENTITIES",
    "KEYAUTH_CREDENTIALS",
    "NO_DEFAULT",
    "PLUGINS",
    "ROUTES",
    "SERVICES",
    "DaoError",
    "Entity",
    "Field",
    "get_entity",
]
