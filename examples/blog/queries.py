"""The blog's reads and writes, as ``select(...)`` statements on an ``AsyncSession``.

Each read takes every key of one batch and runs one statement for all of them (``... WHERE
id IN (...)``): the loaders (``loaders.py``) call them with a batch's keys, the naive endpoints
(``naive.py``) with one key per related row, which is exactly the N+1 pattern.

Call them through ``SharedSession.run`` (``db.py``), so that one task at a time uses the
request's session.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from examples.blog.models import Author, Base, Comment, Post, Tag, post_tags


async def latest_posts(session: AsyncSession, limit: int) -> list[Post]:
    return list(await session.scalars(select(Post).order_by(Post.id.desc()).limit(limit)))


async def authors_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Author]:
    authors = await session.scalars(select(Author).where(Author.id.in_(ids)))
    return {author.id: author for author in authors}


async def posts_by_author_id(
    session: AsyncSession, author_ids: Sequence[int]
) -> dict[int, list[Post]]:
    rows = await session.scalars(
        select(Post).where(Post.author_id.in_(author_ids)).order_by(Post.id)
    )
    posts: dict[int, list[Post]] = {author_id: [] for author_id in author_ids}
    for post in rows:
        posts[post.author_id].append(post)
    return posts


async def comments_by_post_id(
    session: AsyncSession, post_ids: Sequence[int]
) -> dict[int, list[Comment]]:
    rows = await session.scalars(
        select(Comment).where(Comment.post_id.in_(post_ids)).order_by(Comment.id)
    )
    comments: dict[int, list[Comment]] = {post_id: [] for post_id in post_ids}
    for comment in rows:
        comments[comment.post_id].append(comment)
    return comments


async def tags_by_post_id(session: AsyncSession, post_ids: Sequence[int]) -> dict[int, list[str]]:
    rows = await session.execute(
        select(post_tags.c.post_id, Tag.name)
        .join(Tag, Tag.id == post_tags.c.tag_id)
        .where(post_tags.c.post_id.in_(post_ids))
        .order_by(Tag.name)
    )
    tags: dict[int, list[str]] = {post_id: [] for post_id in post_ids}
    for post_id, name in rows:
        tags[post_id].append(name)
    return tags


async def post(session: AsyncSession, post_id: int) -> Post | None:
    return await session.get(Post, post_id)


async def add(session: AsyncSession, row: Base) -> None:
    """INSERT now (a flush), inside the request's transaction: the row has its id, and every
    later read on this session sees it, committed or not."""
    session.add(row)
    await session.flush()


async def commit(session: AsyncSession) -> None:
    await session.commit()
