"""Scenario: SQLAlchemy's asyncio (AsyncSession over sqlite+aiosqlite) on continulet's greenlet.

SQLAlchemy runs the sync ORM inside a greenlet and switches out to await the driver
(``greenlet_spawn`` / ``await_only``).  Asserts that greenlet is ours *inside* that greenlet.
Prints one line, exits non-zero on failure.
"""

import asyncio
import sys

import greenlet
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(30))


def inside_greenlet(sync_session):
    # Runs in SQLAlchemy's greenlet: the sync ORM, whose I/O switches out to the event loop.
    g = greenlet.getcurrent()
    assert isinstance(g, greenlet.greenlet) and g.parent is not None, "not in SQLAlchemy's greenlet"
    impl = sys.modules[greenlet.greenlet.__module__].__implementation__
    assert impl == "continulet", impl
    return [n for (n,) in sync_session.execute(select(Item.name).order_by(Item.id))]


async def main():
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as session:
        session.add_all([Item(name="alpha"), Item(name="beta"), Item(name="gamma")])
        await session.commit()
        rows = (await session.execute(select(Item).where(Item.name != "beta").order_by(Item.id))).scalars().all()
        names = await session.run_sync(inside_greenlet)
    await engine.dispose()
    return [r.name for r in rows], names


if __name__ == "__main__":
    assert greenlet.__implementation__ == "continulet", greenlet.__file__
    got = asyncio.run(main())
    assert got == (["alpha", "gamma"], ["alpha", "beta", "gamma"]), got
    import sqlalchemy

    print("sqlalchemy %s asyncio on greenlet %s (%s): %r" % (sqlalchemy.__version__, greenlet.__version__, greenlet.__file__, got))
