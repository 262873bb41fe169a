"""Threads you own, the REST way: create (or confirm), list, read with messages and
summary, delete. Under ``/api/threads``: ``/threads`` is the Agent Protocol's."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mnemograph.threads_view import read_thread
from mnemograph.web.deps import Id, ServicesDep, User
from mnemograph.web.paging import PageDep, link_next
from mnemograph.web.routes.protocol.records import BookDep
from mnemograph.web.schemas import Deleted, ThreadCreate, ThreadDetail, ThreadOut
from stores.ids import check_id

router = APIRouter(prefix="/api/threads")


@router.post("", status_code=201, summary="Create (or confirm) a thread you own")
async def create_thread(body: ThreadCreate, user: User, services: ServicesDep) -> ThreadOut:
    check_id("thread id", body.thread_id)
    assert services.threads is not None
    return ThreadOut.of(await services.threads.claim(user, body.thread_id, body.title))


@router.get("", summary="Your threads, most recently active first, a page at a time")
async def list_threads(
    user: User, services: ServicesDep, page: PageDep, response: Response
) -> list[ThreadOut]:
    threads = await services.thread_registry().list(user, page.fetch(), page.offset)
    n, cursor = page.cut(threads)
    link_next(response, cursor)
    return [ThreadOut.of(t) for t in threads[:n]]


@router.get("/{thread_id}", summary="A thread's messages and rolling summary")
async def get_thread(thread_id: Id, user: User, services: ServicesDep) -> ThreadDetail:
    check_id("thread id", thread_id)
    assert services.threads is not None
    info = await services.threads.get(thread_id, user)
    return ThreadDetail.model_validate(await read_thread(services, info))


@router.delete("/{thread_id}", summary="Delete a thread and its checkpoints")
async def delete_thread(thread_id: Id, user: User, book: BookDep) -> Deleted:
    await book.delete(user, thread_id)  # under the thread's lock; metadata goes too
    return Deleted(deleted={"threads": 1})
