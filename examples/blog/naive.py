"""ANTI-PATTERN: the same endpoints as ``rest.py``, with one SQL query per related row.

This is the code DataLoader exists to replace, kept here only for comparison. For
``GET /naive/posts?limit=20`` it runs 1 query for the posts, then for every post one for its
author, one for its tags and one for its comments, then one per comment for the comment's
author: about 260 queries, where ``GET /posts?limit=20`` runs 5. Do not copy it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from examples.blog import queries
from examples.blog.models import (
    AuthorOut,
    AuthorWithPostsOut,
    CommentOut,
    PostOut,
    PostSummaryOut,
    missing_author,
)
from examples.blog.rest import DatabaseDep, Limit

router = APIRouter(prefix="/naive", tags=["naive (N+1 anti-pattern)"])


async def _author(db: DatabaseDep, author_id: int) -> AuthorOut:
    author = await queries.author(db, author_id)  # one query per call: N+1
    if author is None:
        raise missing_author(author_id)
    return AuthorOut.of(author)


@router.get("/posts", response_model=list[PostOut], summary="Latest posts, one query per row")
async def list_posts_naive(db: DatabaseDep, limit: Limit = 20) -> list[PostOut]:
    posts = []
    for post in await queries.latest_posts(db, limit):
        comments = [
            CommentOut(id=c.id, body=c.body, author=await _author(db, c.author_id))
            for c in await queries.comments_of_post(db, post.id)
        ]
        posts.append(
            PostOut(
                id=post.id,
                title=post.title,
                body=post.body,
                author=await _author(db, post.author_id),
                tags=await queries.tags_of_post(db, post.id),
                comments=comments,
            )
        )
    return posts


@router.get(
    "/authors/{author_id}",
    response_model=AuthorWithPostsOut,
    summary="An author with their posts, one query per row",
)
async def read_author_naive(db: DatabaseDep, author_id: int) -> AuthorWithPostsOut:
    author = await queries.author(db, author_id)
    if author is None:
        raise HTTPException(status_code=404, detail=f"author {author_id} not found")
    posts = [
        PostSummaryOut(id=post.id, title=post.title, tags=await queries.tags_of_post(db, post.id))
        for post in await queries.posts_of_author(db, author_id)
    ]
    return AuthorWithPostsOut(id=author.id, name=author.name, email=author.email, posts=posts)
