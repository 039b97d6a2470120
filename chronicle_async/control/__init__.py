"""The asyncio control plane (issue: control plane). Not part of this release yet.

It will run segment preallocation, retention, discovery and log draining as
coroutines on uvloop, and hand readers to the hot thread through SPSC rings.
"""
