"""Topics: bounded queues per consumer, block or disconnect when one is full, drain on close."""

from __future__ import annotations

import anyio
import pyarrow as pa
import pytest

from engine.outputs.hub import ConsumerDropped, Topic

pytestmark = pytest.mark.anyio
SCHEMA = pa.schema([("x", pa.int64())])


def _batch(v: int) -> pa.RecordBatch:
    return pa.record_batch([pa.array([v])], schema=SCHEMA)


async def test_block_policy_makes_the_publisher_wait_for_the_slowest_consumer():
    topic = Topic("t", SCHEMA, queue_size=1, policy="block")
    sub = topic.subscribe()
    await topic.publish(_batch(1))
    with anyio.move_on_after(0.1) as waited:
        await topic.publish(_batch(2))
    assert waited.cancelled_caught
    assert (await sub.next_batch()).column(0)[0].as_py() == 1
    with anyio.fail_after(5):
        await topic.publish(_batch(3))
    assert (await sub.next_batch()).column(0)[0].as_py() == 3


async def test_disconnect_policy_drops_only_the_slow_consumer():
    topic = Topic("t", SCHEMA, queue_size=2, policy="disconnect")
    slow, fast = topic.subscribe(), topic.subscribe()
    got = []
    for v in range(5):
        await topic.publish(_batch(v))
        got.append((await fast.next_batch()).column(0)[0].as_py())
    assert got == [0, 1, 2, 3, 4] and topic.consumers == 1 and topic.dropped == 1
    assert [(await slow.next_batch()).column(0)[0].as_py() for _ in range(2)] == [0, 1]  # what it had queued
    with pytest.raises(ConsumerDropped, match="slow consumer"):
        await slow.next_batch()


async def test_close_delivers_what_is_queued_then_ends_iteration():
    topic = Topic("t", SCHEMA, queue_size=4)
    sub = topic.subscribe()
    await topic.publish(_batch(1))
    await topic.publish(_batch(2))
    topic.close()
    assert [b.column(0)[0].as_py() async for b in sub] == [1, 2]
    assert [b async for b in topic.subscribe()] == []  # subscribing after the end: empty


async def test_a_consumer_that_left_is_forgotten():
    topic = Topic("t", SCHEMA, queue_size=1)
    sub = topic.subscribe()
    sub.close()
    with anyio.fail_after(5):
        await topic.publish(_batch(1))
        await topic.publish(_batch(2))
    assert topic.consumers == 0


async def test_after_shutdown_drops_the_laggards_a_consumer_that_keeps_up_gets_every_batch(monkeypatch):
    """The backlog the laggard held up goes out in a burst; a consumer reading at full
    speed but with a small queue must not be dropped for that burst. One that takes
    nothing is dropped after LAGGARD_SEND_S instead of holding shutdown up again."""
    from engine.outputs import hub

    monkeypatch.setattr(hub, "LAGGARD_SEND_S", 0.2)
    topic = Topic("t", SCHEMA, queue_size=2, policy="block")
    stalled, reader, late = topic.subscribe(), topic.subscribe(), topic.subscribe()
    got: list[int] = []

    async def read(sub) -> None:
        async for b in sub:
            got.append(b.column(0)[0].as_py())
            await anyio.sleep(0)

    for v in range(2):  # every queue full; the next publish would wait for the stalled one
        await topic.publish(_batch(v))
    assert [(await late.next_batch()).column(0)[0].as_py() for _ in range(2)] == [0, 1]
    assert topic.drop_laggards("stopping") == 2  # the two that had not read
    assert topic.consumers == 1
    reader2 = topic.subscribe()  # reads from here on, at full speed
    async with anyio.create_task_group() as tg:
        tg.start_soon(read, reader2)
        with anyio.fail_after(5):
            for v in range(2, 50):
                await topic.publish(_batch(v))  # the burst
        # late stopped reading: dropped after LAGGARD_SEND_S, not waited for
        assert late.dropped is not None and topic.consumers == 1
        topic.close()
    assert got == list(range(2, 50))
    assert stalled.dropped and reader.dropped


async def test_after_shutdown_drops_the_laggards_full_consumers_are_waited_for_side_by_side(monkeypatch):
    """One after another, six stalled consumers would hold a publish for six waits, past
    the grace shutdown gives before it drops everyone, the consumers that keep up too."""
    from engine.outputs import hub

    monkeypatch.setattr(hub, "LAGGARD_SEND_S", 0.5)
    topic = Topic("t", SCHEMA, queue_size=1, policy="block")
    stalled = [topic.subscribe() for _ in range(6)]
    await topic.publish(_batch(0))  # every queue full
    topic.drop_laggards("stopping")  # (all of them: none read) ...
    stalled = [topic.subscribe() for _ in range(6)]  # ... and six more that will not read
    await topic.publish(_batch(1))  # fills their queues
    with anyio.fail_after(2):  # one wait of 0.5 s for all six, not six in a row (3 s)
        await topic.publish(_batch(2))
    assert all(s.dropped for s in stalled) and topic.consumers == 0
