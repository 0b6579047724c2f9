"""The REST responses and request bodies. The loader and the naive endpoints return exactly
these."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from examples.blog.db import MAX_ID
from examples.blog.models import Author

#: An id as the database stores it: larger ones are refused with a 422, not sent to the driver.
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class AuthorOut(BaseModel):
    id: int
    name: str

    @classmethod
    def of(cls, author: Author) -> AuthorOut:
        return cls(id=author.id, name=author.name)


class CommentOut(BaseModel):
    id: int
    body: str
    author: AuthorOut


class PostOut(BaseModel):
    id: int
    title: str
    body: str
    author: AuthorOut
    tags: list[str]
    comments: list[CommentOut]


class NewComment(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    author_id: Id
    body: str = Field(min_length=1, max_length=2_000)


class PostSummaryOut(BaseModel):
    id: int
    title: str
    tags: list[str]


class AuthorWithPostsOut(BaseModel):
    id: int
    name: str
    email: str
    posts: list[PostSummaryOut]


def missing_author(author_id: int) -> LookupError:
    """Foreign keys make this unreachable; it keeps the types honest."""
    return LookupError(f"author {author_id} does not exist")
