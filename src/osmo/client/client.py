"""A small synchronous client; the CLI is a thin shell over it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from .. import __version__


class ApiError(Exception):
    def __init__(
        self, status: int, error_code: str, message: str, errors: list[dict[str, Any]] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.errors = errors or []


class ConnectionFailed(Exception):
    pass


class OsmoClient:
    def __init__(
        self,
        url: str,
        user: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"x-osmo-client-version": __version__}
        if user:
            headers["x-osmo-user"] = user
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OsmoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach the osmo server at {self.url}: {exc}") from None
        self._raise_for(response)
        return response

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        raise ApiError(
            response.status_code,
            str(body.get("error_code", "HTTP_ERROR")),
            str(body.get("message", f"HTTP {response.status_code} {response.reason_phrase}")),
            body.get("errors"),
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # ---- API ------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/api/version")
        return result

    def submit(
        self,
        pool: str,
        text: str,
        *,
        set_values: list[str] | None = None,
        set_strings: list[str] | None = None,
        template: str | None = None,
        priority: str = "NORMAL",
        labels: list[str] | None = None,
        env_vars: list[str] | None = None,
        dry_run: bool = False,
        validation_only: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "priority": priority,
            "label": labels or [],
            "env_vars": env_vars or [],
        }
        if dry_run:
            params["dry_run"] = "true"
        if validation_only:
            params["validation_only"] = "true"
        body = {
            "file": text,
            "set_variables": set_values or [],
            "set_string_variables": set_strings or [],
            "uploaded_templated_spec": template,
        }
        result: dict[str, Any] = self._json(
            "POST", f"/api/pool/{pool}/workflow", params=params, json=body
        )
        return result

    def restart(self, pool: str, workflow_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"/api/pool/{pool}/workflow/{workflow_id}/restart"
        )
        return result

    def list_workflows(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v not in (None, [], ())}
        result: dict[str, Any] = self._json("GET", "/api/workflow", params=params)
        return result

    def query(self, workflow_id: str, verbose: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "GET", f"/api/workflow/{workflow_id}", params={"verbose": verbose}
        )
        return result

    def cancel(
        self, workflow_id: str, message: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"force": force}
        if message:
            params["message"] = message
        result: dict[str, Any] = self._json(
            "POST", f"/api/workflow/{workflow_id}/cancel", params=params
        )
        return result

    def logs(
        self,
        workflow_id: str,
        task: str | None = None,
        retry_id: int | None = None,
        last_n: int | None = None,
        follow: bool = False,
        error: bool = False,
    ) -> Iterator[bytes]:
        params: dict[str, Any] = {}
        if task:
            params["task_name"] = task
        if retry_id is not None:
            params["retry_id"] = retry_id
        if last_n:
            params["last_n_lines"] = last_n
        if follow and not error:
            params["follow"] = "true"
        path = f"/api/workflow/{workflow_id}/{'error_logs' if error else 'logs'}"
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach the osmo server at {self.url}: {exc}") from None

    def events(
        self, workflow_id: str, task: str | None = None, retry_id: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if task:
            params["task_name"] = task
        if retry_id is not None:
            params["retry_id"] = retry_id
        result: dict[str, Any] = self._json(
            "GET", f"/api/workflow/{workflow_id}/events", params=params
        )
        return result

    def spec(self, workflow_id: str, template: bool = False) -> str:
        return self._request(
            "GET", f"/api/workflow/{workflow_id}/spec", params={"use_template": template}
        ).text

    def pools(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/api/pool")
        return result

    def resources(self, pools: list[str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/api/resources", params={"pools": pools or []})
        return result

    # ---- configuration --------------------------------------------------------------------

    def pool_config(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/api/configs/pool/{name}")
        return result

    def put_pool(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json("PUT", f"/api/configs/pool/{name}", json=config)
        return result

    def delete_pool(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/api/configs/pool/{name}")
        return result

    def resource(self, node: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/api/resources/{node}")
        return result

    def backends(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/api/configs/backend")
        return result

    def create_backend_token(self, backend: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/api/configs/backend/{backend}/token")
        return result

    def revoke_backend_tokens(self, backend: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/api/configs/backend/{backend}/token")
        return result

    def delete_backend(self, backend: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/api/configs/backend/{backend}")
        return result

    def scheduler_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/api/scheduler/stats")
        return result

    def credentials(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/api/credentials")
        return result

    def set_credential(self, name: str, ctype: str, payload: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"/api/credentials/{name}", json={"type": ctype, "payload": payload}
        )
        return result

    def delete_credential(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/api/credentials/{name}")
        return result

    # ---- datasets -------------------------------------------------------------------------

    def dataset_bucket(self) -> str:
        return str(self._json("GET", "/api/dataset/bucket")["bucket"])

    def dataset_missing(self, name: str, hashes: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"/api/dataset/{name}/missing", json={"hashes": hashes}
        )
        return result

    def dataset_commit(
        self,
        name: str,
        manifest: list[Any],
        tag: str | None,
        metadata: dict[str, str],
        labels: dict[str, str],
    ) -> dict[str, Any]:
        body = {"manifest": manifest, "tag": tag, "metadata": metadata, "labels": labels}
        result: dict[str, Any] = self._json("POST", f"/api/dataset/{name}/version", json=body)
        return result

    def datasets(self, labels: list[str] | None = None, name: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"label": labels or []}
        if name:
            params["name"] = name
        result: dict[str, Any] = self._json("GET", "/api/dataset", params=params)
        return result

    def dataset(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/api/dataset/{name}")
        return result

    def dataset_manifest(self, name: str, ref: str | None) -> dict[str, Any]:
        params = {"ref": ref} if ref else {}
        result: dict[str, Any] = self._json("GET", f"/api/dataset/{name}/manifest", params=params)
        return result

    def dataset_tag(self, name: str, tag: str, version: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"/api/dataset/{name}/tag", json={"tag": tag, "version": version}
        )
        return result

    def dataset_label(self, name: str, set_: dict[str, str], delete: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"/api/dataset/{name}/label", json={"set": set_, "delete": delete}
        )
        return result

    def dataset_delete(self, name: str, version: int | None) -> dict[str, Any]:
        params = {"version": version} if version is not None else {}
        result: dict[str, Any] = self._json("DELETE", f"/api/dataset/{name}", params=params)
        return result
