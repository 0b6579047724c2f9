"""The blog's loaders with a value cache shared by every worker, on Redis (``--redis-url``).

A load that misses the request's own cache asks Redis once per batch; only what Redis misses
reaches SQL. Rows are stored as the JSON of their columns (never pickle) and come back as
detached model instances: the blog reads related rows through loaders, never through lazy
attributes, so a detached row serves as well as one of the session.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

from sqlalchemy import inspect

from aiodataloader import DataLoader
from aiodataloader.redis import RedisCache, RedisValueCache
from examples.blog.loaders import (
    AuthorLoader,
    CommentsOfPostLoader,
    PostsOfAuthorLoader,
    TagsOfPostLoader,
)
from examples.blog.models import Author, Base, Comment, Post

M = TypeVar("M", bound=Base)

#: Entries live this long unless a write invalidates them first.
TTL_SECONDS = 300.0


def _columns(row: Base) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in inspect(row).mapper.column_attrs}


class RowSerializer(Generic[M]):
    """One row of ``model`` (or None, for an id with no row) as the JSON of its columns."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def dumps(self, value: M | None) -> bytes:
        return json.dumps(None if value is None else _columns(value)).encode()

    def loads(self, data: bytes) -> M | None:
        columns = json.loads(data)
        return None if columns is None else self.model(**columns)

    def __repr__(self) -> str:
        return f"RowSerializer({self.model.__name__})"


class RowListSerializer(Generic[M]):
    """A list of rows of ``model`` as a JSON list of their columns."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def dumps(self, value: list[M]) -> bytes:
        return json.dumps([_columns(row) for row in value]).encode()

    def loads(self, data: bytes) -> list[M]:
        return [self.model(**columns) for columns in json.loads(data)]

    def __repr__(self) -> str:
        return f"RowListSerializer({self.model.__name__})"


def value_caches(shared: RedisCache) -> dict[type[DataLoader[Any, Any]], RedisValueCache[Any]]:
    """The value cache of each blog loader. Bump a version when its values change shape."""
    return {
        AuthorLoader: shared.for_loader(
            "blog.author", ttl=TTL_SECONDS, serializer=RowSerializer(Author)
        ),
        PostsOfAuthorLoader: shared.for_loader(
            "blog.posts_of_author", ttl=TTL_SECONDS, serializer=RowListSerializer(Post)
        ),
        CommentsOfPostLoader: shared.for_loader(
            "blog.comments_of_post", ttl=TTL_SECONDS, serializer=RowListSerializer(Comment)
        ),
        TagsOfPostLoader: shared.for_loader("blog.tags_of_post", ttl=TTL_SECONDS),  # JSON
    }
