"""near-dedupe with datasketch's Redis storage as the LSH store, against a real redis-server
started for these tests: the same result as the in-memory store, and nothing left behind."""

import shutil
import socket
import subprocess
import time

import pytest
import redis

from curate.testing import jsonl
from support.dedupe_runs import near_rows, recipe, rejected_lines, run_stage

pytestmark = pytest.mark.slow

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_redis_store_gives_the_memory_result(run_recipe, redis_url):
    rows = near_rows(seed=21, originals=300, copies=60, changes=2)
    rows += [rows[i] for i in range(0, 300, 10)]
    memory = run_stage(run_recipe, rows, "near-dedupe", name="memory")
    stored = run_stage(run_recipe, rows, "near-dedupe",
                       f'storage = "redis"\nredis_url = "{redis_url}"', name="redis")
    assert stored.rejected("near-dedupe") == memory.rejected("near-dedupe")
    assert len(rejected_lines(stored, "near-dedupe")) >= 90
    assert redis.Redis.from_url(redis_url).dbsize() == 0  # the index is deleted afterwards


def test_unreachable_redis_is_one_clear_line(run_recipe):
    url = f"redis://127.0.0.1:{free_port()}/0"
    text = recipe("near-dedupe", f'storage = "redis"\nredis_url = "{url}"')
    result = run_recipe(text, {"data.jsonl": jsonl(*near_rows())}, args=["--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: stage 'near-dedupe': cannot reach Redis at {url}")
    assert "Traceback" not in result.output
