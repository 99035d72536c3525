"""Schemas for the custom resources in deploy/k8s: External Secrets Operator, v1 API.

kubernetes-validate ships only the built-in kinds. These cover the fields our examples use,
strictly (no unknown keys), following the operator's v1 API reference.
"""

from __future__ import annotations

from typing import Any, Final


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STRING: Final = {"type": "string"}
_METADATA: Final = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STRING, "namespace": _STRING, "labels": {"type": "object"}},
}


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {
            "apiVersion": {"const": "external-secrets.io/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


_AWS_AUTH: Final = _object(
    {
        "jwt": _object({"serviceAccountRef": _object({"name": _STRING}, ("name",))}),
        "secretRef": {"type": "object"},
    }
)
_AWS: Final = _object(
    {
        "service": {"enum": ["SecretsManager", "ParameterStore"]},
        "region": _STRING,
        "role": _STRING,
        "auth": _AWS_AUTH,
    },
    ("service", "region"),
)
_REMOTE_REF: Final = _object({"key": _STRING, "property": _STRING, "version": _STRING}, ("key",))
_DATA: Final = {
    "type": "array",
    "minItems": 1,
    "items": _object({"secretKey": _STRING, "remoteRef": _REMOTE_REF}, ("secretKey", "remoteRef")),
}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "SecretStore": _resource(
        "SecretStore", _object({"provider": _object({"aws": _AWS})}, ("provider",))
    ),
    "ExternalSecret": _resource(
        "ExternalSecret",
        _object(
            {
                "refreshInterval": {"type": "string", "pattern": r"^[0-9]+(s|m|h)$"},
                "secretStoreRef": _object(
                    {"kind": {"enum": ["SecretStore", "ClusterSecretStore"]}, "name": _STRING},
                    ("name",),
                ),
                "target": _object(
                    {
                        "name": _STRING,
                        "creationPolicy": {"enum": ["Owner", "Orphan", "Merge", "None"]},
                    }
                ),
                "data": _DATA,
            },
            ("secretStoreRef", "data"),
        ),
    ),
}
