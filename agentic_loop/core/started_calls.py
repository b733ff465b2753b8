"""Tool calls that started: each recorded in the loop's LangGraph store before it runs, so
that a resumed run knows which calls were cut off.

LangGraph stores what a task wrote only when the task ends. A process killed while a tool
runs leaves no trace of the call in the checkpoint, and on resume LangGraph runs the task
again, so the tool would run twice. `call_tool` therefore records each call in the
`BaseStore` the graph was compiled with (`runtime.store`), and waits until the record is
stored before the tool runs. A call whose record is already there was cut off: it started,
and whether it took effect is unknown; `cut_off_action` says what becomes of it. Without a
store nothing is recorded, and a call cut off runs again, as LangGraph runs any task again.

The records are kept per thread, under `("tool_calls", <thread id>)` (a `.` in the id
written `%2E`, as a namespace's labels may hold none), one per call, keyed by the model
turn that asked for it and the call's id: a model that reuses call ids across turns still
gets a record for each call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict

from langgraph.store.base import BaseStore, GetOp, Item, PutOp

if TYPE_CHECKING:
    from langchain_core.messages import ToolCall
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import BaseTool

NAMESPACE: Final = "tool_calls"
"""The first label of the records' namespace; the thread id is the second."""

IDEMPOTENT: Final = "idempotent"
"""The key of a tool's `metadata` that marks it idempotent (`True`): running it twice with
the same key (the tool call id) does what running it once does."""


class StartedCall(TypedDict):
    """What the store holds of a call that started."""

    tool: str
    call_id: str
    starts: int
    """How many times it was started."""
    rerun_approved: bool
    """Whether a person approved running it again after it was cut off."""


Action = Literal["run", "rerun", "ask", "unknown"]
"""What `call_tool` does with a call: `run` it (it never started); `rerun` it with the
same key (it was cut off, and its tool is idempotent); `ask` a person whether to run it
again; or run it no more and tell the model its outcome is `unknown`."""


def is_idempotent(tool: BaseTool) -> bool:
    """Whether the tool says, in its metadata, that it may run twice with the same key."""
    return (tool.metadata or {}).get(IDEMPOTENT) is True


def cut_off_action(earlier: StartedCall | None, *, idempotent: bool, approvals: bool) -> Action:
    """What to do with a call the store has `earlier` started (None: never). A call cut
    off runs again only if its tool is idempotent, or once a person approves; the
    approved run again, if it is cut off too, is not asked about a second time."""
    if earlier is None:
        return "run"
    if idempotent:
        return "rerun"
    if approvals and not earlier["rerun_approved"]:
        return "ask"
    return "unknown"


@dataclass(frozen=True)
class CallRecord:
    """Where the store keeps one call's record. It is read and written with one operation
    at a time (`abatch` of one), never batched with another call's: a SQLite store would
    otherwise read and then write in one transaction, which fails at once, without
    waiting, when another process wrote in between."""

    store: BaseStore
    namespace: tuple[str, ...]
    key: str

    async def read(self) -> StartedCall | None:
        """The call's record, if it started before."""
        [found] = await self.store.abatch([GetOp(self.namespace, self.key)])
        if not isinstance(found, Item):  # None: never started
            return None
        value: dict[str, Any] = found.value
        return {
            "tool": str(value.get("tool", "")),
            "call_id": str(value.get("call_id", "")),
            "starts": int(value.get("starts", 1)),
            "rerun_approved": value.get("rerun_approved") is True,
        }

    async def start(
        self, call: ToolCall, earlier: StartedCall | None, *, approved: bool = False
    ) -> None:
        """Record that `call` starts (again, after `earlier`); back once it is stored."""
        record: StartedCall = {
            "tool": call["name"],
            "call_id": call["id"] or "",
            "starts": (earlier["starts"] if earlier else 0) + 1,
            "rerun_approved": approved or bool(earlier and earlier["rerun_approved"]),
        }
        await self.store.abatch([PutOp(self.namespace, self.key, dict(record), index=False)])


def call_record(
    store: BaseStore | None, config: RunnableConfig, turn_id: str | None, call_id: str
) -> CallRecord | None:
    """Where the record of call `call_id` of the model turn `turn_id` is kept, in the run
    whose `config` this is; None without a store or a thread to keep it for."""
    thread_id = config.get("configurable", {}).get("thread_id")
    if store is None or not thread_id:
        return None
    label = str(thread_id).replace("%", "%25").replace(".", "%2E")
    return CallRecord(store, (NAMESPACE, label), f"{turn_id or ''}/{call_id}")
