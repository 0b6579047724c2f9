"""The blog's SQL, written as batched reads: one statement for any number of keys.

The loaders (``loaders.py``) call these with every key of one batch. The naive endpoints
(``naive.py``) call the single-key helpers at the bottom once per related row, which is
exactly the N+1 pattern that DataLoader removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from examples.blog.db import Database, Transaction, placeholders


@dataclass(frozen=True)
class Author:
    id: int
    name: str
    email: str


@dataclass(frozen=True)
class Post:
    id: int
    author_id: int
    title: str
    body: str


@dataclass(frozen=True)
class Comment:
    id: int
    post_id: int
    author_id: int
    body: str


async def latest_posts(db: Database, limit: int) -> list[Post]:
    rows = await db.fetch_all(
        "SELECT id, author_id, title, body FROM posts ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [Post(*row) for row in rows]


async def authors_by_id(db: Database, ids: Sequence[int]) -> dict[int, Author]:
    rows = await db.fetch_all(
        f"SELECT id, name, email FROM authors WHERE id IN ({placeholders(ids)})", ids
    )
    return {row[0]: Author(*row) for row in rows}


async def posts_by_author_id(db: Database, author_ids: Sequence[int]) -> dict[int, list[Post]]:
    rows = await db.fetch_all(
        "SELECT id, author_id, title, body FROM posts"
        f" WHERE author_id IN ({placeholders(author_ids)}) ORDER BY id",
        author_ids,
    )
    posts: dict[int, list[Post]] = {author_id: [] for author_id in author_ids}
    for row in rows:
        posts[row[1]].append(Post(*row))
    return posts


async def comments_by_post_id(db: Database, post_ids: Sequence[int]) -> dict[int, list[Comment]]:
    rows = await db.fetch_all(
        "SELECT id, post_id, author_id, body FROM comments"
        f" WHERE post_id IN ({placeholders(post_ids)}) ORDER BY id",
        post_ids,
    )
    comments: dict[int, list[Comment]] = {post_id: [] for post_id in post_ids}
    for row in rows:
        comments[row[1]].append(Comment(*row))
    return comments


async def tags_by_post_id(db: Database, post_ids: Sequence[int]) -> dict[int, list[str]]:
    rows = await db.fetch_all(
        "SELECT post_tags.post_id, tags.name FROM post_tags JOIN tags ON tags.id = post_tags.tag_id"
        f" WHERE post_tags.post_id IN ({placeholders(post_ids)}) ORDER BY tags.name",
        post_ids,
    )
    tags: dict[int, list[str]] = {post_id: [] for post_id in post_ids}
    for post_id, name in rows:
        tags[post_id].append(name)
    return tags


# Single-key reads: what an endpoint without DataLoader calls once per row.


async def author(db: Database, author_id: int) -> Author | None:
    return (await authors_by_id(db, [author_id])).get(author_id)


async def posts_of_author(db: Database, author_id: int) -> list[Post]:
    return (await posts_by_author_id(db, [author_id]))[author_id]


async def comments_of_post(db: Database, post_id: int) -> list[Comment]:
    return (await comments_by_post_id(db, [post_id]))[post_id]


async def tags_of_post(db: Database, post_id: int) -> list[str]:
    return (await tags_by_post_id(db, [post_id]))[post_id]


# Writes, inside Database.transaction().


async def post_exists(tx: Transaction, post_id: int) -> bool:
    return bool(await tx.fetch_all("SELECT 1 FROM posts WHERE id = ?", (post_id,)))


async def insert_comment(tx: Transaction, post_id: int, author_id: int, body: str) -> int:
    comment_id = await tx.execute(
        "INSERT INTO comments (post_id, author_id, body) VALUES (?, ?, ?)",
        (post_id, author_id, body),
    )
    assert comment_id is not None
    return comment_id
