"""Peer services for the load benchmark: what a competent Python developer would write instead
of Quiver, served behind the same TCP and HTTP contract so ``bench/loadgen.py`` drives them
unchanged (``Server.spawn(config, module="bench.peers.plain")``).

* ``bench.peers.frontend`` -- the shared asyncio front-end: TCP producers, batching by count
  and linger, live Arrow IPC consumers over HTTP (uvicorn in the same loop), stats, shutdown.
* ``bench.peers.plain`` -- peer 1, "asyncio + orjson": ``orjson.loads`` and Python checks per
  message, ``pa.RecordBatch.from_pylist`` per batch.
* ``bench.peers.pyarrow_json`` -- peer 2, "asyncio + pyarrow.json": ``pyarrow.json.read_json``
  per batch with the rules checked by ``pyarrow.compute``; per-line fallback for bad batches.
* ``bench.peers.reader`` -- not a peer but the floor under all of them: reads the producers'
  bytes and discards them, so its CPU is what the reads alone cost on this machine.
"""
