"""Creates and deletes a test's own RabbitMQ vhost through the management API, in milliseconds, where each
rabbitmqctl call boots an Erlang VM (a second or more on a loaded 2-core machine); rabbitmqctl stays the fallback."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit


class VhostAdmin:
    """Adds a vhost with full permissions for one user, and deletes it, by the management API when it answers."""

    def __init__(self, management_url: str, user: str = "guest") -> None:
        parts = urlsplit(management_url)
        self._base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
        credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()
        self._authorization = f"Basic {base64.b64encode(credentials).decode('ascii')}"
        self._user = user
        self._api: bool | None = None

    def add(self, name: str) -> None:
        """Add the vhost and grant the user everything on it; a vhost whose grant failed is deleted again."""
        api = self._uses_api()
        if api:
            self._call("PUT", f"/api/vhosts/{quote(name, safe='')}", {})
        else:
            rabbitmqctl("add_vhost", name)
        try:
            if api:
                permissions = {"configure": ".*", "write": ".*", "read": ".*"}
                self._call("PUT", f"/api/permissions/{quote(name, safe='')}/{quote(self._user, safe='')}", permissions)
            else:
                rabbitmqctl("set_permissions", "-p", name, self._user, ".*", ".*", ".*")
        except BaseException:
            self.delete(name)
            raise

    def delete(self, name: str) -> None:
        if self._uses_api():
            try:
                self._call("DELETE", f"/api/vhosts/{quote(name, safe='')}", None)
                return
            except urllib.error.HTTPError:
                raise
            except OSError:
                pass  # the API is not answering now (a chaos test restarted the broker): the CLI waits for the node
        rabbitmqctl("delete_vhost", name)

    def _uses_api(self) -> bool:
        """Whether the management API answers with these credentials (asked once)."""
        if self._api is None:
            try:
                self._call("GET", "/api/whoami", None)
                self._api = True
            except OSError:
                self._api = False
        return self._api

    def _call(self, method: str, path: str, body: dict[str, str] | None) -> None:
        request = urllib.request.Request(
            f"{self._base}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self._authorization, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
