//! orch Queue on Redis Streams (consumer groups, XAUTOCLAIM, delayed set) and a shared block cache.
