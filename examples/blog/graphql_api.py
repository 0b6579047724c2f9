"""A Strawberry GraphQL schema over the blog, served with and without DataLoaders.

The resolvers read through ``info.context.reads``:

- at ``/graphql`` that is :class:`BatchedReads`, built on the request's loaders
  (``current_loaders()``), so every level of a nested query is one query per loader;
- at ``/naive/graphql`` it is :class:`NaiveReads` (ANTI-PATTERN, for comparison): every
  resolved field runs its own query.

A nested query multiplies its work at each level (author -> posts -> author -> posts ...), so
the schema refuses, before running anything, a document deeper than :data:`MAX_DEPTH`, with
more than :data:`MAX_ALIASES` aliases, more than :data:`MAX_TOKENS` tokens, or that would
resolve more than :data:`MAX_RESOLVED_FIELDS` fields; every list takes a ``limit`` of at most
:data:`MAX_LIMIT`.
"""

from __future__ import annotations

from typing import Annotated, Protocol

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.types import ExecutionContext

from aiodataloader.asgi import Loaders, current_loaders
from examples.blog import models, naive, queries
from examples.blog.db import SharedSession
from examples.blog.graphql_cost import max_resolved_fields
from examples.blog.guards import decode_graphql_body
from examples.blog.loaders import (
    AuthorLoader,
    CommentsOfPostLoader,
    PostsOfAuthorLoader,
    TagsOfPostLoader,
)
from examples.blog.rest import MAX_LIMIT
from examples.blog.schemas import missing_author

#: Levels of nested fields: enough for post -> comments -> author -> posts -> title.
MAX_DEPTH = 5
MAX_ALIASES = 10
MAX_TOKENS = 1_000
#: Fields one document may resolve, list items multiplied out (``graphql_cost.py``): 100 posts
#: with their author, tags and every comment with its author is about 16,000.
MAX_RESOLVED_FIELDS = 20_000
#: The default ``limit`` of the nested lists (an author's posts, a post's comments).
NESTED_LIMIT = 50


class BlogReads(Protocol):
    async def author(self, author_id: int) -> models.Author | None: ...
    async def posts_of_author(self, author_id: int) -> list[models.Post]: ...
    async def comments_of_post(self, post_id: int) -> list[models.Comment]: ...
    async def tags_of_post(self, post_id: int) -> list[str]: ...


class BatchedReads:
    """Reads through this request's loaders: concurrent resolvers share one batch."""

    def __init__(self, loaders: Loaders) -> None:
        self.loaders = loaders

    async def author(self, author_id: int) -> models.Author | None:
        return await (await self.loaders.aget(AuthorLoader)).load(author_id)

    async def posts_of_author(self, author_id: int) -> list[models.Post]:
        return await (await self.loaders.aget(PostsOfAuthorLoader)).load(author_id)

    async def comments_of_post(self, post_id: int) -> list[models.Comment]:
        return await (await self.loaders.aget(CommentsOfPostLoader)).load(post_id)

    async def tags_of_post(self, post_id: int) -> list[str]:
        return await (await self.loaders.aget(TagsOfPostLoader)).load(post_id)


class NaiveReads:
    """ANTI-PATTERN: one query per resolved field (the N+1 problem). For comparison only."""

    def __init__(self, session: SharedSession) -> None:
        self.session = session

    async def author(self, author_id: int) -> models.Author | None:
        return await naive.author(self.session, author_id)

    async def posts_of_author(self, author_id: int) -> list[models.Post]:
        return await naive.posts_of_author(self.session, author_id)

    async def comments_of_post(self, post_id: int) -> list[models.Comment]:
        return await naive.comments_of_post(self.session, post_id)

    async def tags_of_post(self, post_id: int) -> list[str]:
        return await naive.tags_of_post(self.session, post_id)


class BlogContext(BaseContext):
    def __init__(self, session: SharedSession, reads: BlogReads) -> None:
        super().__init__()
        self.session = session
        self.reads = reads


Info = strawberry.Info[BlogContext, None]
Limit = Annotated[int, strawberry.argument(description=f"How many, 1 to {MAX_LIMIT}")]


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


async def _author(info: Info, author_id: int) -> Author:
    author = await info.context.reads.author(author_id)
    if author is None:
        raise missing_author(author_id)
    return Author.of(author)


@strawberry.type
class Author:
    id: int
    name: str
    email: str

    @classmethod
    def of(cls, row: models.Author) -> Author:
        return cls(id=row.id, name=row.name, email=row.email)

    @strawberry.field
    async def posts(self, info: Info, limit: Limit = NESTED_LIMIT) -> list[Post]:
        rows = await info.context.reads.posts_of_author(self.id)
        return [Post.of(row) for row in rows[: _check_limit(limit)]]


@strawberry.type
class Comment:
    id: int
    body: str
    author_id: strawberry.Private[int]

    @strawberry.field
    async def author(self, info: Info) -> Author:
        return await _author(info, self.author_id)


@strawberry.type
class Post:
    id: int
    title: str
    body: str
    author_id: strawberry.Private[int]

    @classmethod
    def of(cls, row: models.Post) -> Post:
        return cls(id=row.id, title=row.title, body=row.body, author_id=row.author_id)

    @strawberry.field
    async def author(self, info: Info) -> Author:
        return await _author(info, self.author_id)

    @strawberry.field
    async def tags(self, info: Info) -> list[str]:
        return await info.context.reads.tags_of_post(self.id)

    @strawberry.field
    async def comments(self, info: Info, limit: Limit = NESTED_LIMIT) -> list[Comment]:
        rows = await info.context.reads.comments_of_post(self.id)
        return [
            Comment(id=row.id, body=row.body, author_id=row.author_id)
            for row in rows[: _check_limit(limit)]
        ]


@strawberry.type
class Query:
    @strawberry.field
    async def posts(self, info: Info, limit: Limit = 20) -> list[Post]:
        rows = await info.context.session.run(queries.latest_posts, _check_limit(limit))
        return [Post.of(row) for row in rows]

    @strawberry.field
    async def author(self, info: Info, id: int) -> Author | None:
        row = await info.context.reads.author(id)
        return None if row is None else Author.of(row)


class BlogSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # A refused document is the client's mistake, and logging it (with its source, which
        # can be 64 KiB) at ERROR for every request would let anyone flood the logs. Errors
        # raised while resolving are still logged.
        raised = [error for error in errors if error.original_error is not None]
        super().process_errors(raised, execution_context)


schema = BlogSchema(
    query=Query,
    extensions=[
        # Refused before anything runs. The limiters come first, so the caches never hold a
        # refused document's work.
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: max_resolved_fields(MAX_RESOLVED_FIELDS, largest_limit=MAX_LIMIT),
        # Parsing and validating a document costs more than resolving a small query.
        ParserCache,
        ValidationCache,
    ],
)


async def batched_context() -> BlogContext:
    # current_loaders() works anywhere inside a request that LoaderMiddleware handles.
    scope = current_loaders()
    return BlogContext(session=await scope.aget(SharedSession), reads=BatchedReads(scope))


async def naive_context() -> BlogContext:
    session = await current_loaders().aget(SharedSession)
    return BlogContext(session=session, reads=NaiveReads(session))


class BlogGraphQLRouter(GraphQLRouter[BlogContext, None]):
    def decode_json(self, data: str | bytes) -> object:
        return decode_graphql_body(data)


def graphql_router(*, naive: bool = False) -> BlogGraphQLRouter:
    return BlogGraphQLRouter(schema, context_getter=naive_context if naive else batched_context)
