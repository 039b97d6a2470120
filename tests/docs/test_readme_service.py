"""README's asyncio service runs as written and leaves what it says: the output queue and a commit."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from chronicle_async import Queue

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def service_block() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    found = [b for b in blocks if "async def enrich" in b]
    assert len(found) == 1, "README has one asyncio service block"
    return found[0]


def test_the_readme_asyncio_service_enriches_every_message_commits_and_exits(tmp_path):
    p = subprocess.run([sys.executable, "-c", service_block()], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    with Queue.open_subscriber(tmp_path / "orders-enriched") as r:
        got = [bytes(m.payload) for m in r]
    assert got == [b"ORDER %d" % i for i in range(1000)]
    with Queue.open_subscriber(tmp_path / "orders", "enricher") as r:
        assert r.next_seq == 1000, "the service committed after its last message"
