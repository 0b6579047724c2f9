"""``GET /posts`` and ``GET /authors/{id}`` through request-scoped DataLoaders.

Related rows are loaded concurrently (``asyncio.gather``), so every load of one level lands in
the same batch: ``GET /posts?limit=20`` runs 5 queries (posts; their authors, tags and
comments; the comments' authors) whatever the limit. Compare ``naive.py``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from aiodataloader.fastapi import get_loader
from examples.blog import queries
from examples.blog.db import Database
from examples.blog.loaders import (
    AuthorLoader,
    CommentsOfPostLoader,
    PostsOfAuthorLoader,
    TagsOfPostLoader,
)
from examples.blog.models import (
    AuthorOut,
    AuthorWithPostsOut,
    CommentOut,
    NewComment,
    PostOut,
    PostSummaryOut,
    missing_author,
)

MAX_LIMIT = 100


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


DatabaseDep = Annotated[Database, Depends(get_database)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="How many of the latest posts")]

Authors = Annotated[AuthorLoader, Depends(get_loader(AuthorLoader))]
PostsOfAuthor = Annotated[PostsOfAuthorLoader, Depends(get_loader(PostsOfAuthorLoader))]
CommentsOfPost = Annotated[CommentsOfPostLoader, Depends(get_loader(CommentsOfPostLoader))]
TagsOfPost = Annotated[TagsOfPostLoader, Depends(get_loader(TagsOfPostLoader))]

router = APIRouter(tags=["with DataLoaders"])


@router.get("/posts", response_model=list[PostOut], summary="Latest posts, batched")
async def list_posts(
    db: DatabaseDep,
    authors: Authors,
    comments: CommentsOfPost,
    tags: TagsOfPost,
    limit: Limit = 20,
) -> list[PostOut]:
    def author_out(author: queries.Author | None, author_id: int) -> AuthorOut:
        if author is None:
            raise missing_author(author_id)
        return AuthorOut.of(author)

    async def comments_out(post_id: int) -> list[CommentOut]:
        post_comments = await comments.load(post_id)
        # One load per comment, yet one query for the comments of all posts together.
        comment_authors = await authors.load_many([c.author_id for c in post_comments])
        return [
            CommentOut(id=c.id, body=c.body, author=author_out(author, c.author_id))
            for c, author in zip(post_comments, comment_authors, strict=True)
        ]

    async def post_out(post: queries.Post) -> PostOut:
        author, post_tags, post_comments = await asyncio.gather(
            authors.load(post.author_id), tags.load(post.id), comments_out(post.id)
        )
        return PostOut(
            id=post.id,
            title=post.title,
            body=post.body,
            author=author_out(author, post.author_id),
            tags=post_tags,
            comments=post_comments,
        )

    posts = await queries.latest_posts(db, limit)
    return list(await asyncio.gather(*(post_out(post) for post in posts)))


@router.get(
    "/authors/{author_id}", response_model=AuthorWithPostsOut, summary="An author with posts"
)
async def read_author(
    author_id: int, authors: Authors, posts_of: PostsOfAuthor, tags: TagsOfPost
) -> AuthorWithPostsOut:
    author, posts = await asyncio.gather(authors.load(author_id), posts_of.load(author_id))
    if author is None:
        raise HTTPException(status_code=404, detail=f"author {author_id} not found")
    post_tags = await tags.load_many([post.id for post in posts])
    return AuthorWithPostsOut(
        id=author.id,
        name=author.name,
        email=author.email,
        posts=[
            PostSummaryOut(id=post.id, title=post.title, tags=names)
            for post, names in zip(posts, post_tags, strict=True)
        ],
    )


@router.post(
    "/posts/{post_id}/comments",
    status_code=201,
    response_model=CommentOut,
    summary="Add a comment (in a transaction)",
)
async def add_comment(
    post_id: int, comment: NewComment, db: DatabaseDep, authors: Authors, comments: CommentsOfPost
) -> CommentOut:
    author = await authors.load(comment.author_id)
    if author is None:
        raise HTTPException(status_code=422, detail=f"author {comment.author_id} does not exist")
    # All or nothing: an error or a cancelled request rolls the transaction back.
    async with db.transaction() as tx:
        if not await queries.post_exists(tx, post_id):
            raise HTTPException(status_code=404, detail=f"post {post_id} not found")
        comment_id = await queries.insert_comment(tx, post_id, comment.author_id, comment.body)
    # A loader caches for the whole request: forget what it may have read before the write.
    comments.clear(post_id)
    return CommentOut(id=comment_id, body=comment.body, author=AuthorOut.of(author))
