"""ANTI-PATTERN, for comparison only: the same endpoints with one query per related row.

``GET /naive/posts?limit=20`` runs one query for the posts, then for each post one for its
author, one for its tags and one for its comments, then one per comment for the comment's
author: about 250 queries, where ``GET /posts?limit=20`` runs 5. Do not copy it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from examples.blog import queries
from examples.blog.db import SharedSession
from examples.blog.models import Author, Comment, Post
from examples.blog.rest import AuthorId, Limit, Session
from examples.blog.schemas import (
    AuthorOut,
    AuthorWithPostsOut,
    CommentOut,
    PostOut,
    PostSummaryOut,
    missing_author,
)

router = APIRouter(prefix="/naive", tags=["naive (N+1 anti-pattern)"])


async def author(session: SharedSession, author_id: int) -> Author | None:
    return (await session.run(queries.authors_by_id, [author_id])).get(author_id)


async def posts_of_author(session: SharedSession, author_id: int) -> list[Post]:
    return (await session.run(queries.posts_by_author_id, [author_id]))[author_id]


async def comments_of_post(session: SharedSession, post_id: int) -> list[Comment]:
    return (await session.run(queries.comments_by_post_id, [post_id]))[post_id]


async def tags_of_post(session: SharedSession, post_id: int) -> list[str]:
    return (await session.run(queries.tags_by_post_id, [post_id]))[post_id]


async def _author_out(session: SharedSession, author_id: int) -> AuthorOut:
    row = await author(session, author_id)  # one query per call: N+1
    if row is None:
        raise missing_author(author_id)
    return AuthorOut.of(row)


@router.get("/posts", response_model=list[PostOut], summary="Latest posts, one query per row")
async def list_posts_naive(session: Session, limit: Limit = 20) -> list[PostOut]:
    posts = []
    for post in await session.run(queries.latest_posts, limit):
        comments = [
            CommentOut(id=c.id, body=c.body, author=await _author_out(session, c.author_id))
            for c in await comments_of_post(session, post.id)
        ]
        posts.append(
            PostOut(
                id=post.id,
                title=post.title,
                body=post.body,
                author=await _author_out(session, post.author_id),
                tags=await tags_of_post(session, post.id),
                comments=comments,
            )
        )
    return posts


@router.get(
    "/authors/{author_id}",
    response_model=AuthorWithPostsOut,
    summary="An author with their posts, one query per row",
)
async def read_author_naive(session: Session, author_id: AuthorId) -> AuthorWithPostsOut:
    row = await author(session, author_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"author {author_id} not found")
    posts = [
        PostSummaryOut(id=post.id, title=post.title, tags=await tags_of_post(session, post.id))
        for post in await posts_of_author(session, author_id)
    ]
    return AuthorWithPostsOut(id=row.id, name=row.name, email=row.email, posts=posts)
