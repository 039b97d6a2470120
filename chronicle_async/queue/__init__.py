"""One queue's files and the objects over them: the layer between the hot kernels and everything else.

Internal: import the public names from ``chronicle_async``. What each module holds:

- ``queue.py``: :class:`Queue`, the folder and its defaults; opens publishers and subscribers.
- ``writer.py``: :class:`QueueWriter`, the one writer: append, roll, flush, the supply hook.
- ``reader.py``: :class:`QueueReader`, a named or anonymous reader, and :class:`Message`.
- ``cursor.py``: :class:`ReaderCursor`, the one object per reader position: the mapped control file
  and segment, the offset and seq, the position file; the only code that maps a position to a
  row of the hot loop's source table.
- ``waits.py``: the asyncio waits over cursors (one waker thread per process).
- ``supply.py``: preparing the next segments off the writer's thread (its own supplier thread).
- ``recovery.py``: crash recovery of the tail, a function from the files to a tail description.
- ``housekeeping.py``: the writer's background thread (heartbeat, lazy flush, retention caps).
- ``files.py``, ``lock.py``, ``position.py``: files and mappings, OFD locks, position files.
- ``retention.py``: which segments no live reader needs, and deleting them (``cleanup_segments``).
- ``liveness.py``: :class:`WriterStatus` and :class:`DisconnectReason`.
- ``config.py``, ``args.py``: options and argument checks; ``idle.py``: idle strategies and park counts;
  ``ring.py``: :class:`SpscRing`; ``fences.py``: process-wide fences; ``fork.py``: fork safety;
  ``warm.py``: compiling the wait kernels before the first wait.

Imports only ``chronicle_async.hot`` and ``chronicle_async._errors`` from outside this folder.
"""
