"""Service account tokens, pure parts: JWS signing and verification (ES256, ES384, RS256), key ids,
upstream's claims, time validation with go-jose's leeway, the issuer's verify(), the JWKS, and the
ServiceAccount admission plugin's volume and flag logic."""
from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubelab.apiserver import serviceaccounts as sat
from kubelab.apiserver.admission import (TOKEN_MOUNT_PATH, mount_service_account_token, plugins_from_flags,
                                         should_automount, token_volume_source)
from kubelab.pki import certs

NOW = 1_800_000_000
SA = {"metadata": {"name": "robot", "namespace": "apps", "uid": "sa-uid"}}
POD = {"metadata": {"name": "web-0", "namespace": "apps", "uid": "pod-uid"}, "spec": {"serviceAccountName": "robot"}}
NODE = {"metadata": {"name": "node-1", "uid": "node-uid"}}
SECRET = {"metadata": {"name": "s", "namespace": "apps", "uid": "secret-uid"}}


def _part(token: str, i: int) -> dict:
    p = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("make, alg", [
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
    (None, "RS256"),
])
def test_sign_and_verify(make, alg, rsa_key):
    key = make() if make else rsa_key
    token = sat.encode({"iss": "x", "sub": "y"}, key)
    header = _part(token, 0)
    assert header == {"alg": alg, "kid": sat.key_id(key.public_key())}
    assert _part(token, 1) == {"iss": "x", "sub": "y"}
    assert sat.verify_signature(token, [key.public_key()])
    other = ec.generate_private_key(ec.SECP256R1())
    assert not sat.verify_signature(token, [other.public_key()])
    # a changed payload breaks the signature
    head, _, sig = token.split(".")
    forged = head + "." + base64.urlsafe_b64encode(b'{"iss":"x","sub":"admin"}').rstrip(b"=").decode() + "." + sig
    assert not sat.verify_signature(forged, [key.public_key()])


def test_key_id_is_sha256_of_spki():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = sat.key_id(key)
    assert base64.urlsafe_b64decode(kid + "=") == hashlib.sha256(der).digest()
    assert "=" not in kid and len(kid) == 43


def test_claims_of_a_pod_bound_token():
    c = sat.make_claims("https://issuer", SA, ["api"], 3600, now=NOW, pod=POD, node=NODE, warn_after=3607)
    assert c["iss"] == "https://issuer"
    assert c["sub"] == "system:serviceaccount:apps:robot"
    assert c["aud"] == ["api"]
    assert (c["iat"], c["nbf"], c["exp"]) == (NOW, NOW, NOW + 3600)
    assert len(c["jti"]) == 36
    assert c["kubernetes.io"] == {"namespace": "apps", "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                                  "pod": {"name": "web-0", "uid": "pod-uid"},
                                  "node": {"name": "node-1", "uid": "node-uid"}, "warnafter": NOW + 3607}


def test_claims_of_secret_and_node_bound_tokens():
    c = sat.make_claims("i", SA, ["a"], 600, now=NOW, secret=SECRET)
    assert c["kubernetes.io"]["secret"] == {"name": "s", "uid": "secret-uid"}
    assert "pod" not in c["kubernetes.io"] and "warnafter" not in c["kubernetes.io"]
    c = sat.make_claims("i", SA, ["a"], 600, now=NOW, node=NODE)
    assert c["kubernetes.io"]["node"] == {"name": "node-1", "uid": "node-uid"}
    # a pod on a node that is gone: only the node's name
    c = sat.make_claims("i", SA, ["a"], 600, now=NOW, pod=POD, node={"metadata": {"name": "gone"}})
    assert c["kubernetes.io"]["node"] == {"name": "gone"}


@pytest.mark.parametrize("claims, now, error", [
    ({"exp": NOW, "nbf": NOW - 10, "iat": NOW - 10}, NOW + 59, None),          # within the leeway
    ({"exp": NOW, "nbf": NOW - 10, "iat": NOW - 10}, NOW + 61, "service account token has expired"),
    ({"exp": NOW + 600, "nbf": NOW + 120, "iat": NOW}, NOW, "service account token is not valid yet"),
    ({"exp": NOW + 600, "nbf": NOW, "iat": NOW + 120}, NOW, "service account token is issued in the future"),
    ({"exp": "soon"}, NOW, "could not be validated"),
])
def test_time_claims(claims, now, error):
    if error is None:
        sat.check_times(claims, now)
    else:
        with pytest.raises(sat.TokenError, match=error):
            sat.check_times(claims, now)


@pytest.fixture
def issuer():
    key = ec.generate_private_key(ec.SECP256R1())
    return sat.ServiceAccountTokens(issuers=["https://issuer"], public_keys=[key.public_key()], signing_key=key)


def test_issuer_verifies_its_tokens(issuer):
    token = issuer.sign(sat.make_claims(issuer.issuer, SA, issuer.api_audiences, 600))
    claims = issuer.verify(token)
    assert claims["sub"] == "system:serviceaccount:apps:robot"
    assert issuer.api_audiences == ["https://issuer"]       # audiences default to the issuers


def test_issuer_leaves_other_tokens_and_refuses_bad_ones(issuer):
    assert issuer.verify("static-token") is None
    assert issuer.verify("a.b.c") is None
    foreign = issuer.sign(sat.make_claims("https://elsewhere", SA, ["https://issuer"], 600))
    assert issuer.verify(foreign) is None
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(sat.TokenError):
        issuer.verify(sat.encode(sat.make_claims(issuer.issuer, SA, ["https://issuer"], 600), other))
    with pytest.raises(sat.TokenError, match="token audiences"):
        issuer.verify(issuer.sign(sat.make_claims(issuer.issuer, SA, ["vault"], 600)))
    with pytest.raises(sat.TokenError, match="has expired"):
        issuer.verify(issuer.sign(sat.make_claims(issuer.issuer, SA, ["https://issuer"], 600,
                                                  now=time.time() - 3600)))


@pytest.mark.parametrize("token_auds, target, expected", [
    (["a", "b"], ["b", "c"], ["b"]), ("a", ["a"], ["a"]), ([], ["api"], ["api"]), (None, ["api"], ["api"]),
    (["x"], ["api"], []), (5, ["api"], []), ([1, "api"], ["api"], ["api"]),
])
def test_audiences_intersect(token_auds, target, expected):
    assert sat.audiences_intersect(token_auds, target) == expected


def test_jwks_and_openid_configuration(issuer, rsa_key):
    issuer.public_keys.append(rsa_key.public_key())
    jwks = issuer.jwks()["keys"]
    ec_jwk, rsa_jwk = jwks
    n = issuer.signing_key.public_key().public_numbers()
    assert ec_jwk["kty"] == "EC" and ec_jwk["crv"] == "P-256" and ec_jwk["alg"] == "ES256" and ec_jwk["use"] == "sig"
    assert int.from_bytes(base64.urlsafe_b64decode(ec_jwk["x"] + "="), "big") == n.x
    assert int.from_bytes(base64.urlsafe_b64decode(ec_jwk["y"] + "="), "big") == n.y
    assert rsa_jwk["kty"] == "RSA" and rsa_jwk["e"] == "AQAB" and rsa_jwk["alg"] == "RS256"
    assert ec_jwk["kid"] == sat.key_id(issuer.signing_key.public_key())
    cfg = issuer.openid_configuration()
    assert cfg["issuer"] == "https://issuer"
    assert cfg["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert cfg["response_types_supported"] == ["id_token"] and cfg["subject_types_supported"] == ["public"]
    assert issuer.discovery_served()
    assert not sat.ServiceAccountTokens(issuers=["not-a-url"], public_keys=issuer.public_keys).discovery_served()


def test_key_files(tmp_path):
    ca, ca_key = certs.make_ca()
    key, pub = certs.make_key_pair()
    (tmp_path / "bundle.pem").write_bytes(pub + ca + key)
    keys = sat.load_public_keys(str(tmp_path / "bundle.pem"))
    assert len(keys) == 3
    signing = sat.load_signing_key(str(tmp_path / "bundle.pem"))
    assert sat.key_id(signing.public_key()) == sat.key_id(keys[0])
    (tmp_path / "junk").write_text("hello\n")
    with pytest.raises(sat.KeyFileError, match="does not contain any valid RSA or ECDSA public keys"):
        sat.load_public_keys(str(tmp_path / "junk"))
    with pytest.raises(sat.KeyFileError, match="private key"):
        sat.load_signing_key(str(tmp_path / "junk"))
    with pytest.raises(sat.KeyFileError, match="No such file"):
        sat.load_public_keys(str(tmp_path / "missing"))


# --- the ServiceAccount admission plugin ---------------------------------------------------------


def _pod(**spec) -> dict:
    return {"metadata": {"name": "p", "namespace": "apps"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], **spec}}


def test_token_volume_is_mounted_everywhere():
    pod = _pod(initContainers=[{"name": "init"}])
    mount_service_account_token(pod)
    vols = pod["spec"]["volumes"]
    assert len(vols) == 1 and vols[0]["name"].startswith("kube-api-access-") and len(vols[0]["name"]) == 21
    assert vols[0]["projected"] == token_volume_source()
    assert vols[0]["projected"]["sources"][0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        assert c["volumeMounts"] == [{"name": vols[0]["name"], "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}]


def test_token_volume_respects_existing_mounts_and_volumes():
    own = {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}
    pod = _pod(containers=[{"name": "a", "volumeMounts": [own]}], volumes=[{"name": "mine", "emptyDir": {}}])
    mount_service_account_token(pod)
    assert pod["spec"]["containers"][0]["volumeMounts"] == [own]
    assert pod["spec"]["volumes"] == [{"name": "mine", "emptyDir": {}}]
    pod = _pod(volumes=[{"name": "kube-api-access-abcde", "projected": {"sources": []}}])
    mount_service_account_token(pod)
    assert len(pod["spec"]["volumes"]) == 1
    assert pod["spec"]["containers"][1]["volumeMounts"][0]["name"] == "kube-api-access-abcde"


@pytest.mark.parametrize("pod_value, sa_value, expected", [
    (None, None, True), (False, None, False), (None, False, False), (True, False, True), (False, True, False),
])
def test_should_automount(pod_value, sa_value, expected):
    pod = _pod() if pod_value is None else _pod(automountServiceAccountToken=pod_value)
    sa = {} if sa_value is None else {"automountServiceAccountToken": sa_value}
    assert should_automount(sa, pod) is expected


def test_admission_plugin_flags():
    assert "ServiceAccount" in plugins_from_flags([], [])
    assert "ServiceAccount" not in plugins_from_flags([], ["ServiceAccount"])
    assert "NodeRestriction" in plugins_from_flags(["NodeRestriction"], [])
    with pytest.raises(ValueError, match='enable-admission-plugins plugin "Nope" is unknown'):
        plugins_from_flags(["Nope"], [])
    with pytest.raises(ValueError, match=r"\[Priority\] in enable-admission-plugins and disable-admission-plugins "
                                         r"overlapped"):
        plugins_from_flags(["Priority"], ["Priority"])


# --- kubelab-apiserver's flags ----------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--service-account-max-token-expiration", "30m"],
     "the service-account-max-token-expiration must be between 1 hour and 2^32 seconds"),
    (["--service-account-signing-key-file", "/nonexistent"], "service-account-key-file is a required flag"),
    (["--service-account-key-file", "/nonexistent"], "failed to read key file '/nonexistent'"),
    (["--enable-admission-plugins", "Bogus"], 'enable-admission-plugins plugin "Bogus" is unknown'),
])
def test_apiserver_flag_errors(args, message, capsys):
    from kubelab.cmd.apiserver import parse
    with pytest.raises(SystemExit) as e:
        parse(["--etcd-servers", "http://127.0.0.1:2379", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_apiserver_service_account_flags(tmp_path):
    from kubelab.cmd.apiserver import parse
    key, pub = certs.make_key_pair()
    (tmp_path / "sa.key").write_bytes(key)
    (tmp_path / "sa.pub").write_bytes(pub)
    cfg = parse(["--etcd-servers", "http://127.0.0.1:2379", "--service-account-key-file", str(tmp_path / "sa.pub"),
                 "--service-account-signing-key-file", str(tmp_path / "sa.key"), "--service-account-issuer",
                 "https://a", "--service-account-issuer", "https://b", "--api-audiences", "x,y",
                 "--service-account-max-token-expiration", "2h", "--disable-admission-plugins", "ServiceAccount",
                 "--advertise-address", "10.0.0.1", "--secure-port", "6443"])
    sa = cfg.service_accounts
    assert sa.issuers == ["https://a", "https://b"] and sa.issuer == "https://a"
    assert sa.api_audiences == ["x", "y"] and sa.max_expiration == 7200
    assert sa.jwks_uri == "https://10.0.0.1:6443/openid/v1/jwks"
    assert sat.key_id(sa.signing_key.public_key()) == sat.key_id(sa.public_keys[0])
    assert "ServiceAccount" not in cfg.admission_plugins and "Priority" in cfg.admission_plugins
