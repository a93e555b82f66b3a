"""A small JSON-in, JSON-out layer over ``kubernetes_asyncio``'s API client.

The executor works with plain dicts (no generated model classes on the hot path), counts every
write it makes (the API-writes-per-task figure), and reads watch streams line by line itself so
that it controls resourceVersion bookkeeping and the 410 → relist path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

log = logging.getLogger(__name__)


QueryParams = list[tuple[str, str]]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: dict[str, Any] | None = None):
        self.status = status
        self.reason = reason
        self.body = body or {}
        message = self.body.get("message") if isinstance(self.body, dict) else None
        super().__init__(f"{status} {reason}: {message or ''}".strip())

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.reason)

    @property
    def reason_code(self) -> str:
        """The Status object's machine-readable reason (``AlreadyExists``, ``Invalid``, ...)."""
        return str(self.body.get("reason") or "")


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: ``/api/v1`` or ``/apis/<group>/<version>``, plural."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        return base


PODS = Resource("v1", "pods")
SECRETS = Resource("v1", "secrets")
SERVICES = Resource("v1", "services")
NODES = Resource("v1", "nodes", namespaced=False)
NAMESPACES = Resource("v1", "namespaces", namespaced=False)
KNOWN: dict[tuple[str, str], Resource] = {
    ("v1", "Pod"): PODS,
    ("v1", "Secret"): SECRETS,
    ("v1", "Service"): SERVICES,
    ("v1", "ConfigMap"): Resource("v1", "configmaps"),
    ("scheduling.run.ai/v2alpha2", "PodGroup"): Resource("scheduling.run.ai/v2alpha2", "podgroups"),
    ("scheduling.x-k8s.io/v1alpha1", "PodGroup"): Resource(
        "scheduling.x-k8s.io/v1alpha1", "podgroups"
    ),
}


async def load_api_client(kubeconfig: str | None) -> k8s_client.ApiClient:
    """From ``kubeconfig``, else $KUBECONFIG / ~/.kube/config, else the in-cluster account."""
    configuration = k8s_client.Configuration()
    if kubeconfig:
        await k8s_config.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration
        )
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config(client_configuration=configuration)
    return k8s_client.ApiClient(configuration)


class Kube:
    """JSON calls against one API server; ``writes`` counts POST/PUT/PATCH/DELETE requests."""

    def __init__(self, api: k8s_client.ApiClient):
        self.api = api
        self.writes = 0
        self._discovered: dict[tuple[str, str], Resource] = dict(KNOWN)

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = 60,
    ) -> Any:
        if method != "GET":
            self.writes += 1
        resp = await self._call(method, path, query, body, content_type, timeout)
        try:
            data = await resp.read()
        finally:
            resp.release()
        if not 200 <= resp.status <= 299:
            raise _error(resp.status, resp.reason or "", data)
        if not data:
            return None
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(data)
        return data.decode("utf-8", "replace")

    async def _call(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float] | None,
    ) -> Any:
        params = [
            (k, str(v).lower() if isinstance(v, bool) else v) for k, v in (query or {}).items()
        ]
        if isinstance(timeout, tuple):
            client_timeout = aiohttp.ClientTimeout(
                connect=timeout[0], sock_connect=timeout[0], sock_read=timeout[1]
            )
        else:
            client_timeout = aiohttp.ClientTimeout(total=timeout)
        return await self.api.call_api(
            path,
            method,
            query_params=params,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=client_timeout,
        )

    # ---- conveniences ---------------------------------------------------------------------

    async def resource_for(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._discovered:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            doc = await self.request("GET", path)
            for r in doc.get("resources", []):
                if "/" not in r["name"]:
                    self._discovered[(api_version, r["kind"])] = Resource(
                        api_version, r["name"], bool(r.get("namespaced", True))
                    )
            if key not in self._discovered:
                raise ApiError(404, f"the API server has no {kind} in {api_version}")
        return self._discovered[key]

    async def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
        """Create ``obj``; None if it exists already (a replayed launch)."""
        res = await self.resource_for(obj["apiVersion"], obj["kind"])
        try:
            result: dict[str, Any] = await self.request("POST", res.path(namespace), body=obj)
            return result
        except ApiError as exc:
            if exc.status == 409 and exc.reason_code == "AlreadyExists":
                return None
            raise

    async def delete_collection(
        self, res: Resource, namespace: str, selector: str, grace: int | None = None
    ) -> None:
        query: dict[str, Any] = {"labelSelector": selector}
        if grace is not None:
            query["gracePeriodSeconds"] = grace
        try:
            await self.request("DELETE", res.path(namespace), query=query)
        except ApiError as exc:
            if exc.status == 405:  # no deletecollection for this kind: one by one
                items = await self.request(
                    "GET", res.path(namespace), query={"labelSelector": selector}
                )
                for item in items.get("items", []):
                    await self.delete(res, namespace, item["metadata"]["name"], grace)
            elif exc.status != 404:
                raise

    async def delete(
        self, res: Resource, namespace: str, name: str, grace: int | None = None
    ) -> bool:
        query: dict[str, Any] = {}
        if grace is not None:
            query["gracePeriodSeconds"] = grace
        try:
            await self.request("DELETE", res.path(namespace, name), query=query)
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise

    async def patch_merge(
        self, res: Resource, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request(
                "PATCH",
                res.path(namespace, name),
                body=patch,
                content_type="application/merge-patch+json",
            )
            return result
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self, res: Resource, namespace: str | None, selector: str | None = None
    ) -> dict[str, Any]:
        """A full list (following ``continue``), ``metadata.resourceVersion`` of the first page."""
        query: dict[str, Any] = {"limit": 500}
        if selector:
            query["labelSelector"] = selector
        items: list[dict[str, Any]] = []
        rv = ""
        while True:
            page = await self.request("GET", res.path(namespace), query=query)
            items.extend(page.get("items") or [])
            rv = rv or page["metadata"].get("resourceVersion", "")
            token = page["metadata"].get("continue")
            if not token:
                break
            query["continue"] = token
        return {"items": items, "resourceVersion": rv}

    async def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Events after ``resource_version`` (BOOKMARKs included); raises ``Gone`` on 410."""
        query: dict[str, Any] = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        if selector:
            query["labelSelector"] = selector
        resp = await self._call(
            "GET", res.path(namespace), query, None, "application/json", (10, timeout_seconds + 30)
        )
        try:
            if resp.status == 410:
                raise Gone()
            if not 200 <= resp.status <= 299:
                raise _error(resp.status, resp.reason or "", await resp.read())
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    if obj.get("code") == 410:
                        raise Gone()
                    raise ApiError(int(obj.get("code") or 500), obj.get("reason", ""), obj)
                yield event
        finally:
            resp.release()
            resp.close()

    async def open_stream(
        self, namespace: str, name: str, subresource: str, query: QueryParams
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to ``pods/<name>/exec`` or ``pods/<name>/portforward`` (channel protocol
        ``v4.channel.k8s.io``); the caller reads and writes the multiplexed channels."""
        headers: dict[str, str] = {}
        await self.api.update_params_for_auth(headers, query, ["BearerToken"])
        cfg = self.api.configuration
        url = f"{cfg.host}{PODS.path(namespace, name)}/{subresource}"
        ssl: Any = None
        if cfg.verify_ssl is False:
            ssl = False
        session = self.api.rest_client.pool_manager
        self.writes += 1  # a "create" on the subresource
        return await session.ws_connect(
            url,
            params=query,
            headers=headers,
            protocols=("v4.channel.k8s.io",),
            ssl=ssl,
        )

    async def pod_log(
        self,
        namespace: str,
        name: str,
        container: str,
        *,
        tail_lines: int | None = None,
        limit_bytes: int | None = None,
    ) -> str:
        query: dict[str, Any] = {"container": container}
        if tail_lines is not None:
            query["tailLines"] = tail_lines
        if limit_bytes is not None:
            query["limitBytes"] = limit_bytes
        resp = await self._call(
            "GET", PODS.path(namespace, name) + "/log", query, None, "application/json", 30
        )
        try:
            data = await resp.read()
        finally:
            resp.release()
        if not 200 <= resp.status <= 299:
            raise _error(resp.status, resp.reason or "", data)
        return str(data.decode("utf-8", "surrogateescape"))


def _error(status: int, reason: str, data: bytes) -> ApiError:
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {"message": data.decode("utf-8", "replace")[:500]}
    return ApiError(status, reason, body if isinstance(body, dict) else {})


async def gather_limited(limit: int, coros: list[Any]) -> list[Any]:
    """Run ``coros`` with at most ``limit`` in flight; results (or exceptions) in order."""
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)
