"""`sidegate tenants block|unblock|show TENANT`: the admin API from the command line.

It calls the running gateway (the config's `server.host`/`server.port`, or `--url`) with the
config's `admin.token`, so the block takes effect in that process at once — and in every replica
when `state.backend: redis`, since the block list then lives in Redis.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request

from sidegate.settings import Settings


def run_tenants(settings: Settings, action: str, tenant: str, url: str | None) -> int:
    token = settings.admin.token
    if not token:
        print("sidegate: admin.token is not set in the configuration", file=sys.stderr)
        return 1
    if url is None:
        host = settings.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = f"http://{host}:{settings.server.port}"
    path = f"/admin/tenants/{urllib.parse.quote(tenant, safe='')}"
    if action != "show":
        path += f"/{action}"
    request = urllib.request.Request(
        url.rstrip("/") + path,
        method="GET" if action == "show" else "POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(f"sidegate: {error.code}: {error.read().decode(errors='replace')}", file=sys.stderr)
    except OSError as error:
        print(f"sidegate: cannot reach {url}: {error}", file=sys.stderr)
    return 1
