"""FastAPI + SQLAlchemy 2.0 async: one session per request, shared by the endpoint and its
loaders. Run it with ``uvicorn examples.quickstart_sqlalchemy:app`` (SQLite in
``quickstart.sqlite3``, or any async URL in ``DATABASE_URL``)."""

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path
from sqlalchemy import ForeignKey, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, Loaders
from aiodataloader.fastapi import get_loader, get_resource


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)
    title: Mapped[str]


class RequestSession:
    """The request's session. Two loaders' batches run concurrently, and an AsyncSession
    must not be used by two tasks at once: hold ``lock`` while using ``session``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.lock = asyncio.Lock()


class AuthorLoader(DataLoader[int, Author | None]):
    def __init__(self, db: RequestSession) -> None:
        super().__init__()
        self.db = db

    async def batch_load_fn(self, keys: list[int]) -> dict[int, Author]:
        async with self.db.lock:  # one SELECT for every author loaded in the same tick
            authors = await self.db.session.scalars(select(Author).where(Author.id.in_(keys)))
        return {author.id: author for author in authors}  # ids without a row load None


class BooksByAuthorLoader(DataLoader[int, list[Book]]):
    def __init__(self, db: RequestSession) -> None:
        super().__init__(default_factory=list)  # an author without books loads []
        self.db = db

    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[Book]]:
        query = select(Book).where(Book.author_id.in_(keys)).order_by(Book.id)
        async with self.db.lock:
            books = await self.db.session.scalars(query)
        by_author: dict[int, list[Book]] = {}
        for book in books:
            by_author.setdefault(book.author_id, []).append(book)
        return by_author


async def request_session(scope: Loaders) -> AsyncIterator[RequestSession]:
    async with scope.connection.app.state.sessionmaker() as session:
        yield RequestSession(session)  # closed after the response, after the loaders


async def author_loader(scope: Loaders) -> AuthorLoader:
    return AuthorLoader(await scope.aget(RequestSession))


async def books_loader(scope: Loaders) -> BooksByAuthorLoader:
    return BooksByAuthorLoader(await scope.aget(RequestSession))


registry = LoaderRegistry()
registry.register(RequestSession, request_session)
registry.register(AuthorLoader, author_loader)
registry.register(BooksByAuthorLoader, books_loader)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncGenerator[None, None]:
    engine = create_async_engine(
        os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///quickstart.sqlite3")
    )
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
app.add_middleware(LoaderMiddleware, registry=registry)

Session = Annotated[RequestSession, Depends(get_resource(RequestSession))]
Authors = Annotated[AuthorLoader, Depends(get_loader(AuthorLoader))]
BooksByAuthor = Annotated[BooksByAuthorLoader, Depends(get_loader(BooksByAuthorLoader))]
AuthorId = Annotated[int, Path(le=2**31 - 1)]  # INTEGER on PostgreSQL: larger ids get a 422


@app.get("/books")
async def list_books(db: Session, authors: Authors) -> list[dict[str, str]]:
    async with db.lock:
        books = (await db.session.scalars(select(Book).order_by(Book.id).limit(100))).all()
    # One load per book, one query for all of their authors.
    book_authors = await authors.load_many([book.author_id for book in books])
    return [
        {"title": book.title, "author": author.name if author else "?"}
        for book, author in zip(books, book_authors, strict=True)
    ]


@app.get("/authors/{author_id}")
async def read_author(
    author_id: AuthorId, authors: Authors, books: BooksByAuthor
) -> dict[str, str | list[str]]:
    # Both loaders' batches run concurrently, taking turns on the request's session.
    author, author_books = await asyncio.gather(authors.load(author_id), books.load(author_id))
    if author is None:
        raise HTTPException(status_code=404, detail=f"author {author_id} not found")
    return {"name": author.name, "books": [book.title for book in author_books]}
