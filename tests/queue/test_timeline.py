"""The per-minute timeline the scripts keep (lua/_lib.lua flush_timeline) and its
reading (queue/timeline.py, service/timeline.py), against a real Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib.queue import lua, timeline
from chalicelib.service import timeline as service_timeline
from chalicelib.service.deps import Services


def test_the_scripts_bucket_a_wait_as_python_does(services: Services) -> None:
    waits = [0, 0.5, 1, 1.18, 1.2, 2, 3, 4, 7, 10, 99, 100, 1000, 4871, 60_000, 86_400_000]
    lib = lua.source("claim").split("\nlocal function main()")[0]
    body = "for _, ms in ipairs(cjson.decode(ARGV[1])) do tl_wait(ms) end\n"
    body += "local out = {}\nfor i, n in pairs(TLW) do out[#out + 1] = {i, n} end\nreturn out\n"
    keys = services.queue._k("tl-check")
    got = services.redis.eval(lib + "\n" + body, len(keys), *keys, str(waits).replace(" ", ""))
    expected: dict[int, int] = {}
    for ms in waits:
        expected[timeline.bucket_of(ms)] = expected.get(timeline.bucket_of(ms), 0) + 1
    assert {int(i): int(n) for i, n in got} == expected


def test_a_claim_and_its_outcomes_are_counted_in_their_minute(services: Services) -> None:
    a = services.tasks.enqueue("t", queue="tl")
    b = services.tasks.enqueue("t", queue="tl", max_attempts=1)
    services.tasks.enqueue("t", queue="tl-other")
    leases = services.queue.claim(["tl"], "w1", 2, 30_000).leases
    assert {lease.task_id for lease in leases} == {a["id"], b["id"]}
    by_id = {lease.task_id: lease for lease in leases}
    services.queue.complete("tl", a["id"], by_id[a["id"]].lease_token, "null")
    services.queue.fail("tl", b["id"], by_id[b["id"]].lease_token, "boom")
    waits = []
    for task in (a, b):
        h = services.queue.task_hash("tl", task["id"])
        assert h is not None
        waits.append(timeline.bucket_of(int(h["sa"]) - int(h["run"])))
    [bucket] = service_timeline.buckets(services.queue, 5, ["tl"])
    assert (bucket["queue"], bucket["enqueued"], bucket["succeeded"], bucket["failed"]) == (
        "tl",
        2,
        1,
        1,
    )
    assert bucket["started"] == 2
    assert bucket["p50_ms"] == timeline.bucket_value(min(waits))
    assert bucket["p99_ms"] == timeline.bucket_value(max(waits))
    assert bucket["minute"].endswith(":00.000+00:00")
    everything = service_timeline.buckets(services.queue, 5)
    assert sorted(b["queue"] for b in everything) == ["tl", "tl-other"]
    ttl = services.redis.pttl(
        services.keys.queue("tl").timeline(services.queue.clock.now_ms() // 60_000)
    )
    assert 1440 * 60_000 < ttl <= 1441 * 60_000


@pytest.mark.parametrize(
    ("hist", "p50", "p99"),
    [
        ({}, None, None),
        ({0: 10}, 0.0, 0.0),
        ({1: 99, 40: 1}, timeline.bucket_value(1), timeline.bucket_value(1)),
        ({1: 98, 40: 2}, timeline.bucket_value(1), timeline.bucket_value(40)),
        ({5: 1, 9: 1}, timeline.bucket_value(5), timeline.bucket_value(9)),
    ],
)
def test_percentiles_are_nearest_rank_over_the_buckets(
    hist: dict[int, int], p50: float | None, p99: float | None
) -> None:
    assert timeline.percentile(hist, 0.5) == p50
    assert timeline.percentile(hist, 0.99) == p99


def test_a_reported_percentile_is_within_nine_percent_of_any_wait_in_its_bucket() -> None:
    for ms in [1, 1.5, 2, 3, 17, 250, 999, 12_345, 3_600_000]:
        value = timeline.bucket_value(timeline.bucket_of(ms))
        assert abs(value - ms) / ms < 0.091, ms


def test_the_scripts_keep_a_minute_as_long_as_the_endpoint_reads_back() -> None:
    text = (Path(lua.__file__).parent / "_lib.lua").read_text(encoding="utf-8")
    ttl = re.search(r"local TL_TTL_MS = (\d+) \* 60000", text)
    scale = re.search(r"local TL_SCALE = (\d+) / math.log\(2\)", text)
    assert ttl is not None and int(ttl.group(1)) == timeline.MAX_MINUTES + 1
    assert scale is not None and int(scale.group(1)) == timeline.PER_DOUBLING
