"""通知: the signed-in person's notices (the inbox the phones pull, ``notify.inbox``), newest
first, unread ones marked; "标为已读" marks one read as the push op ``notice.read`` does
(``inbox.mark_read``, the server's receipt time), with its refusals (``unknown_notice``,
``not_your_notice``). Linked from 今日 and the navigation."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from gridsync.api.console.base import Viewer, form_of, page, see_other
from gridsync.api.params import PageOffset
from gridsync.clock import Clock
from gridsync.db import Store
from gridsync.notify import inbox

PAGE = 50
NoticeId = Annotated[str, PathParameter(min_length=1, max_length=20)]


class InboxController(Controller):
    path = "/console/inbox"
    include_in_schema = False

    @get("/")
    async def notices(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        unread: Annotated[bool, QueryParameter()] = False,
        offset: PageOffset = 0,
    ) -> Template:
        items, total = await store.aread(
            inbox.list_notices,
            viewer.principal.person_id,
            unread=unread,
            limit=PAGE,
            offset=offset,
        )
        return page(
            "inbox.html",
            viewer,
            "inbox",
            items=items,
            total=total,
            unread=unread,
            offset=offset,
            page_size=PAGE,
        )

    @post("/{notice_id:str}/read", status_code=303)
    async def mark_read(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        notice_id: NoticeId,
    ) -> Redirect:
        await form_of(request, viewer)
        await store.awrite(inbox.mark_read, viewer.principal.person_id, notice_id, clock.now_ms())
        return see_other("/console/inbox")
