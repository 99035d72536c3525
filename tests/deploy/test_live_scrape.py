"""A real `sidegate serve` answers the probe paths the manifests use and, after a plain and a
streamed request, exports the series (with the labels) that the alerts select on."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.manifests import PROMETHEUS, Doc, pod_spec
from tests.deploy.promql import metric_names, rule_expressions
from tests.e2e.procs import Process, free_port, http_get, start

# Series that exist only after something rarer happens (an upstream marked down, a limit hit,
# a budget configured, a cache lookup) are not expected from two plain requests.
NEEDS_AN_EVENT = {
    "llm_upstream_up",
    "llm_rate_limited_total",
    "llm_budget_remaining_usd",
    "llm_cache_requests_total",
    "up",  # written by Prometheus, not by Sidegate
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("live-scrape") / "sidegate.log"
    process = start(["serve", "--port", str(port)], port, log_path)
    yield process
    process.stop(signal.SIGTERM)


def chat(url: str, *, stream: bool) -> int:
    body = {
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": "hello deploy"}],
        "stream": stream,
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


def test_probe_paths_of_the_manifests_answer(
    gateway: Process, rendered: dict[str, list[Doc]]
) -> None:
    paths = set()
    for doc in rendered["sidecar"] + rendered["gateway"]:
        if doc["kind"] in {"DaemonSet", "Deployment"}:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                paths.add(pod_spec(doc)["containers"][0][probe]["httpGet"]["path"])
    assert paths == {"/health", "/ready"}
    for path in sorted(paths):
        status, _ = http_get(gateway.url + path)
        assert status == 200, path


def test_requests_export_what_the_alerts_select(gateway: Process) -> None:
    # Time to first token is measured on streams only.
    assert chat(gateway.url, stream=False) == 200
    assert chat(gateway.url, stream=True) == 200
    status, text = http_get(gateway.url + "/metrics")
    assert status == 200
    samples = {
        sample.name: set(sample.labels)
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }
    used = set().union(
        *(metric_names(expr) for _, expr in rule_expressions(PROMETHEUS / "alerts.yaml"))
    )
    missing = sorted(used - NEEDS_AN_EVENT - set(samples))
    assert missing == []
    # The labels the alerts group by are on the series.
    assert {"model", "upstream", "tenant", "status"} <= samples["llm_requests_total"]
    assert {"model", "le"} <= samples["llm_request_duration_seconds_bucket"]
    assert {"le"} <= samples["llm_proxy_overhead_seconds_bucket"]
