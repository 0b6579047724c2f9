"""``GET /posts``, ``GET /authors/{id}`` and ``POST /posts/{id}/comments`` through
request-scoped DataLoaders.

Related rows are loaded concurrently (``asyncio.gather``), so every load of one level lands in
the same batch: ``GET /posts?limit=20`` runs 5 queries (posts; their authors, tags and
comments; the comments' authors) whatever the limit. Compare ``naive.py``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from aiodataloader.fastapi import RequestLoaders, get_loader, get_resource
from examples.blog import queries
from examples.blog.db import MAX_ID, SharedSession
from examples.blog.loaders import (
    AuthorLoader,
    CommentsOfPostLoader,
    PostsOfAuthorLoader,
    TagsOfPostLoader,
    save,
)
from examples.blog.models import Author, Comment, Post
from examples.blog.schemas import (
    AuthorOut,
    AuthorWithPostsOut,
    CommentOut,
    NewComment,
    PostOut,
    PostSummaryOut,
    missing_author,
)

MAX_LIMIT = 100
MAX_COMMENTS_PER_POST = 1_000


#: The request's session: the very object its loaders read through.
Session = Annotated[SharedSession, Depends(get_resource(SharedSession))]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="How many of the latest posts")]
AuthorId = Annotated[int, Path(ge=1, le=MAX_ID)]
PostId = Annotated[int, Path(ge=1, le=MAX_ID)]

Authors = Annotated[AuthorLoader, Depends(get_loader(AuthorLoader))]
PostsOfAuthor = Annotated[PostsOfAuthorLoader, Depends(get_loader(PostsOfAuthorLoader))]
CommentsOfPost = Annotated[CommentsOfPostLoader, Depends(get_loader(CommentsOfPostLoader))]
TagsOfPost = Annotated[TagsOfPostLoader, Depends(get_loader(TagsOfPostLoader))]

router = APIRouter(tags=["with DataLoaders"])


def _author_out(author: Author | None, author_id: int) -> AuthorOut:
    if author is None:
        raise missing_author(author_id)
    return AuthorOut.of(author)


async def post_out(
    post: Post, authors: AuthorLoader, comments: CommentsOfPostLoader, tags: TagsOfPostLoader
) -> PostOut:
    """A post with its author, tags and comments (and their authors), all through loaders."""

    async def comments_out() -> list[CommentOut]:
        post_comments = await comments.load(post.id)
        # One load per comment, yet one query for the comments of all posts together.
        comment_authors = await authors.load_many([c.author_id for c in post_comments])
        return [
            CommentOut(id=c.id, body=c.body, author=_author_out(author, c.author_id))
            for c, author in zip(post_comments, comment_authors, strict=True)
        ]

    author, post_tags, post_comments = await asyncio.gather(
        authors.load(post.author_id), tags.load(post.id), comments_out()
    )
    return PostOut(
        id=post.id,
        title=post.title,
        body=post.body,
        author=_author_out(author, post.author_id),
        tags=post_tags,
        comments=post_comments,
    )


@router.get("/posts", response_model=list[PostOut], summary="Latest posts, batched")
async def list_posts(
    session: Session,
    authors: Authors,
    comments: CommentsOfPost,
    tags: TagsOfPost,
    limit: Limit = 20,
) -> list[PostOut]:
    posts = await session.run(queries.latest_posts, limit)
    return list(await asyncio.gather(*(post_out(p, authors, comments, tags) for p in posts)))


@router.get(
    "/authors/{author_id}", response_model=AuthorWithPostsOut, summary="An author with posts"
)
async def read_author(
    author_id: AuthorId, authors: Authors, posts_of: PostsOfAuthor, tags: TagsOfPost
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
    response_model=PostOut,
    summary="Add a comment; answers the post as it reads now, new comment included",
)
async def add_comment(
    post_id: PostId,
    comment: NewComment,
    session: Session,
    scope: RequestLoaders,
    authors: Authors,
    comments: CommentsOfPost,
    tags: TagsOfPost,
) -> PostOut:
    post = await session.run(queries.post, post_id)
    if post is None:
        raise HTTPException(status_code=404, detail=f"post {post_id} not found")
    if await authors.load(comment.author_id) is None:
        raise HTTPException(status_code=422, detail=f"author {comment.author_id} does not exist")
    # A read before the write: the loader now caches the post's comments without the new one,
    # which save() makes it forget.
    if len(await comments.load(post_id)) >= MAX_COMMENTS_PER_POST:
        raise HTTPException(status_code=409, detail=f"post {post_id} has too many comments")
    await save(scope, Comment(post_id=post_id, **comment.model_dump()))
    # Read back through the loaders, in the same transaction: the new comment is there.
    answer = await post_out(post, authors, comments, tags)
    await session.run(queries.commit)
    await comments.invalidate(post_id)  # for every worker's shared cache, now committed
    return answer
