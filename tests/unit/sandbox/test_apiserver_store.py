"""In-process `server.store` access, in-process watches and the request-hook seam."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from mayanode_operator.sandbox.apiserver import ApiError, EmulatedApiServer, request_info


@pytest.fixture
async def server():
    s = EmulatedApiServer(bookmark_interval=0.2)
    await s.start()
    yield s
    await s.stop()


async def test_store_crud_and_watch(server):
    store = server.store
    watch = store.watch("configmaps", "default")
    created = store.create("configmaps", {"metadata": {"name": "a"}, "data": {"k": "v"}}, "default")
    store.patch("configmaps", "a", {"data": {"k": "w"}}, "default")
    store.delete("configmaps", "a", "default")
    events = [await watch.next(1) for _ in range(3)]
    watch.close()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["data"] == {"k": "w"}
    assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    with pytest.raises(ApiError) as err:
        store.get("configmaps", "a", "default")
    assert err.value.code == 404 and err.value.status()["message"] == 'configmaps "a" not found'


async def test_http_watch_stream_with_bookmarks_and_timeout(server):
    async with aiohttp.ClientSession() as http:
        rv = server.store.resource_version
        url = f"{server.url}/api/v1/namespaces/default/configmaps?watch=True&resourceVersion={rv}" \
              f"&allowWatchBookmarks=true&timeoutSeconds=1"
        async with http.get(url) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.headers.get("Transfer-Encoding") == "chunked"
            server.store.create("configmaps", {"metadata": {"name": "b"}}, "default")
            lines = [line async for line in response.content]
    types = [__import__("json").loads(line)["type"] for line in lines]
    assert types[0] == "ADDED" and "BOOKMARK" in types


async def test_request_hooks_can_inject_faults_and_count_writes(server):
    counted: list[str] = []

    async def fail_first_create(request, call_next):
        info = request_info(request)
        if info.verb == "create" and info.resource == "configmaps" and not counted:
            counted.append("failed")
            from aiohttp import web
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "TooManyRequests", "code": 429}, status=429)
        response = await call_next(request)
        if info.is_write:
            counted.append(f"{info.verb} {info.resource} {response.status}")
        return response

    server.add_request_hook(fail_first_create)
    async with aiohttp.ClientSession() as http:
        url = f"{server.url}/api/v1/namespaces/default/configmaps"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
        async with http.post(url, json=body) as first:
            assert first.status == 429
        async with http.post(url, json=body) as second:
            assert second.status == 201
    server.remove_request_hook(fail_first_create)
    assert counted == ["failed", "create configmaps 201"]


async def test_garbage_collection_of_orphans_created_after_owner(server):
    store = server.store
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "no-such-uid"}
    store.create("configmaps", {"metadata": {"name": "orphan", "ownerReferences": [ref]}}, "default")
    await asyncio.sleep(0.05)
    assert not store.exists("configmaps", "orphan", "default")
