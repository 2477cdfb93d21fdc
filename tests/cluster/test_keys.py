"""The key scheme under Redis Cluster: all of a queue's keys in one slot (so one script
can move a task atomically), different queues on different nodes (so the load
spreads), asked of the servers themselves (CLUSTER KEYSLOT, CLUSTER NODES)."""

from __future__ import annotations

import redis

from bench.redis_server import LocalCluster
from chalicelib.queue.keys import Keys
from tests.cluster.fixtures import QUEUES


def _owners(node: redis.Redis) -> list[tuple[int, int, str]]:
    """(first slot, last slot, host:port) of every primary, from CLUSTER NODES (which
    redis-py parses into {address: {"slots": [[first, last], …], …}})."""
    nodes = node.execute_command("CLUSTER NODES")
    return [
        (int(first), int(last), address)
        for address, info in nodes.items()
        for first, last in info["slots"]
    ]


def _every_key(keys: Keys, queue: str) -> list[str]:
    qk = keys.queue(queue)
    return [
        qk.ready,
        qk.scheduled,
        qk.retrying,
        qk.running,
        qk.dead,
        qk.meta,
        qk.stats,
        qk.seq,
        qk.events,
        qk.signal,
        qk.task("0190c5b2-0000-7000-8000-000000000000"),
        qk.lock_prefix + "acct-1",
        qk.lockwait_prefix + "acct-1",
        qk.timeline(29_000_000),
        keys.outcomes(queue, "0190c5b2-0000-7000-8000-000000000000"),
    ]


def test_a_queues_keys_share_one_slot_and_queues_spread_over_the_nodes(
    redis_cluster: LocalCluster,
) -> None:
    keys = Keys("dtq")
    [first, *others] = redis_cluster.nodes()
    try:
        owners = _owners(first)
        assert len({address for _, _, address in owners}) == 3
        node_of_queue = {}
        for queue in QUEUES:
            slots = {first.execute_command("CLUSTER KEYSLOT", k) for k in _every_key(keys, queue)}
            assert len(slots) == 1, (queue, slots)
            [slot] = slots
            assert slot == first.execute_command("CLUSTER KEYSLOT", queue)  # the hash tag
            [address] = [a for lo, hi, a in owners if lo <= slot <= hi]
            node_of_queue[queue] = address
        # The same queue name under another prefix (a second deployment) keeps its slot.
        assert first.execute_command("CLUSTER KEYSLOT", Keys("other").queue("beta").ready) == (
            first.execute_command("CLUSTER KEYSLOT", keys.queue("beta").ready)
        )
        assert len(set(node_of_queue.values())) == 3, node_of_queue
    finally:
        for node in (first, *others):
            node.close()
