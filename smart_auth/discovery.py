"""Discovery: ``/.well-known/smart-configuration`` (SMART App Launch 2.x,
https://hl7.org/fhir/smart-app-launch/conformance.html#using-well-known), OpenID Connect
discovery (https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata)
and the CapabilityStatement's ``rest.security`` with the SMART service code and the
``oauth-uris`` extension (some clients, e.g. client-py, read only that).

The capabilities list is honest: each entry names something this server does.
"""

from __future__ import annotations

from typing import Any

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
]

SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "user/*.cruds",
    "user/*.rs",
    "user/*.read",
    "user/*.write",
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
]

AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
SIGNING_ALGS = ["RS384", "ES384"]
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def smart_configuration(issuer: str, urls: dict[str, str]) -> dict[str, Any]:
    """The body of ``GET {fhir base}/.well-known/smart-configuration``."""
    config: dict[str, Any] = {
        "issuer": issuer,
        "jwks_uri": urls["jwks"],
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "scopes_supported": SCOPES_SUPPORTED,
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
        "introspection_endpoint": urls["introspect"],
        "revocation_endpoint": urls["revoke"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    if "register" in urls:
        config["registration_endpoint"] = urls["register"]
    return config


def openid_configuration(issuer: str, urls: dict[str, str]) -> dict[str, Any]:
    """OpenID Provider metadata at ``{issuer}/.well-known/openid-configuration``."""
    config: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "jwks_uri": urls["jwks"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser", "offline_access", "online_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "userinfo_endpoint": urls["userinfo"],
    }
    if "register" in urls:
        config["registration_endpoint"] = urls["register"]
    return config


def capability_security(urls: dict[str, str]) -> dict[str, Any]:
    """``CapabilityStatement.rest.security`` for a SMART server."""
    names = ["authorize", "token", "register", "introspect", "revoke"]
    return {
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": name, "valueUri": urls[name]} for name in names if name in urls
                ],
            }
        ],
        "service": [
            {
                "coding": [
                    {
                        "system": SECURITY_SERVICE,
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "description": "SMART App Launch 2.x: authorization code with PKCE (S256),"
        " Backend Services (client_credentials with private_key_jwt).",
    }
