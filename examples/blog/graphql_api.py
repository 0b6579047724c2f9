"""A Strawberry GraphQL schema over the blog, served with and without DataLoaders.

The resolvers read through ``info.context.reads``:

- at ``/graphql`` that is :class:`BatchedReads`, built on the request's loaders
  (``current_loaders()``), so every level of a nested query is one query per loader;
- at ``/naive/graphql`` it is :class:`NaiveReads` (ANTI-PATTERN, for comparison): every
  resolved field runs its own query.
"""

from __future__ import annotations

from typing import Annotated, Protocol

import strawberry
from fastapi import Request
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.fastapi import BaseContext, GraphQLRouter

from aiodataloader.asgi import Loaders, current_loaders
from examples.blog import queries
from examples.blog.db import Database
from examples.blog.loaders import (
    AuthorLoader,
    CommentsOfPostLoader,
    PostsOfAuthorLoader,
    TagsOfPostLoader,
)
from examples.blog.models import missing_author
from examples.blog.rest import MAX_LIMIT


class BlogReads(Protocol):
    async def author(self, author_id: int) -> queries.Author | None: ...
    async def posts_of_author(self, author_id: int) -> list[queries.Post]: ...
    async def comments_of_post(self, post_id: int) -> list[queries.Comment]: ...
    async def tags_of_post(self, post_id: int) -> list[str]: ...


class BatchedReads:
    """Reads through this request's loaders: concurrent resolvers share one batch."""

    def __init__(self, loaders: Loaders) -> None:
        self.loaders = loaders

    async def author(self, author_id: int) -> queries.Author | None:
        return await self.loaders.get(AuthorLoader).load(author_id)

    async def posts_of_author(self, author_id: int) -> list[queries.Post]:
        return await self.loaders.get(PostsOfAuthorLoader).load(author_id)

    async def comments_of_post(self, post_id: int) -> list[queries.Comment]:
        return await self.loaders.get(CommentsOfPostLoader).load(post_id)

    async def tags_of_post(self, post_id: int) -> list[str]:
        return await self.loaders.get(TagsOfPostLoader).load(post_id)


class NaiveReads:
    """ANTI-PATTERN: one query per resolved field (the N+1 problem). For comparison only."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def author(self, author_id: int) -> queries.Author | None:
        return await queries.author(self.db, author_id)

    async def posts_of_author(self, author_id: int) -> list[queries.Post]:
        return await queries.posts_of_author(self.db, author_id)

    async def comments_of_post(self, post_id: int) -> list[queries.Comment]:
        return await queries.comments_of_post(self.db, post_id)

    async def tags_of_post(self, post_id: int) -> list[str]:
        return await queries.tags_of_post(self.db, post_id)


class BlogContext(BaseContext):
    def __init__(self, db: Database, reads: BlogReads) -> None:
        super().__init__()
        self.db = db
        self.reads = reads


Info = strawberry.Info[BlogContext, None]
Limit = Annotated[
    int, strawberry.argument(description=f"How many of the latest posts, 1 to {MAX_LIMIT}")
]


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
    def of(cls, row: queries.Author) -> Author:
        return cls(id=row.id, name=row.name, email=row.email)

    @strawberry.field
    async def posts(self, info: Info) -> list[Post]:
        return [Post.of(row) for row in await info.context.reads.posts_of_author(self.id)]


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
    def of(cls, row: queries.Post) -> Post:
        return cls(id=row.id, title=row.title, body=row.body, author_id=row.author_id)

    @strawberry.field
    async def author(self, info: Info) -> Author:
        return await _author(info, self.author_id)

    @strawberry.field
    async def tags(self, info: Info) -> list[str]:
        return await info.context.reads.tags_of_post(self.id)

    @strawberry.field
    async def comments(self, info: Info) -> list[Comment]:
        rows = await info.context.reads.comments_of_post(self.id)
        return [Comment(id=row.id, body=row.body, author_id=row.author_id) for row in rows]


@strawberry.type
class Query:
    @strawberry.field
    async def posts(self, info: Info, limit: Limit = 20) -> list[Post]:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        return [Post.of(row) for row in await queries.latest_posts(info.context.db, limit)]

    @strawberry.field
    async def author(self, info: Info, id: int) -> Author | None:
        row = await info.context.reads.author(id)
        return None if row is None else Author.of(row)


# Parsing and validating a document costs more than resolving a small query: cache both.
schema = strawberry.Schema(query=Query, extensions=[ParserCache, ValidationCache])


async def batched_context(request: Request) -> BlogContext:
    # current_loaders() works anywhere inside a request that LoaderMiddleware handles.
    return BlogContext(db=request.app.state.db, reads=BatchedReads(current_loaders()))


async def naive_context(request: Request) -> BlogContext:
    return BlogContext(db=request.app.state.db, reads=NaiveReads(request.app.state.db))


def graphql_router(*, naive: bool = False) -> GraphQLRouter[BlogContext, None]:
    return GraphQLRouter(schema, context_getter=naive_context if naive else batched_context)
