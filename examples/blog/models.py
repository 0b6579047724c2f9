"""The REST responses. Both the loader and the naive endpoints return exactly these."""

from __future__ import annotations

from pydantic import BaseModel, Field

from examples.blog import queries


class AuthorOut(BaseModel):
    id: int
    name: str

    @classmethod
    def of(cls, author: queries.Author) -> AuthorOut:
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
    author_id: int
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
