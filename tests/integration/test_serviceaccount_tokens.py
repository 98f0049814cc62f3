"""Service account tokens against a real apiserver (with upstream's default admission plugins):
TokenRequest through the official client and `kubectl create token`, tokens authenticating
(`kubectl auth whoami`), expired, foreign and unbound tokens refused with 401, the ServiceAccount
admission plugin's projected volume, and the JWKS verifying a token."""
from __future__ import annotations

import base64
import dataclasses
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kubelab.apiserver import serviceaccounts as sat

pytestmark = pytest.mark.integration

ISSUER = "https://kubernetes.default.svc.cluster.local"
KUBECTL = str(Path(sys.executable).parent / "kubectl")


@pytest.fixture
def sakubectl(sa_control_plane, kubectl):
    """The real kubectl against the apiserver with the ServiceAccount admission plugin."""
    return dataclasses.replace(kubectl, kubeconfig=sa_control_plane.kubeconfig)


@pytest.fixture
def core(sa_control_plane):
    from kubernetes import client, config
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(sa_control_plane.kubeconfig), client_configuration=cfg)
    api = client.ApiClient(cfg)
    yield client.CoreV1Api(api)
    api.close()


def _claims(token: str) -> dict:
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def _request(cp, path: str, token: str | None = None, admin: bool = False,
             body: object = None) -> tuple[int, bytes, dict]:
    pki = cp.api.pki.dir
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if admin:
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(cp.url + path, data=data, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _whoami(cp, token: str, tmp_path) -> subprocess.CompletedProcess:
    """kubectl auth whoami with a kubeconfig that holds only the token."""
    kc = tmp_path / "token.kubeconfig"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": cp.url,
                                               "certificate-authority": str(cp.api.pki.dir / "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}]}))
    return subprocess.run([KUBECTL, "--kubeconfig", str(kc), "--cache-dir", str(tmp_path / "wc"), "auth", "whoami",
                           "-o", "json"], capture_output=True, text=True, timeout=60)


def _sa(kubectl, ns: str, name: str, **extra) -> dict:
    obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}, **extra}
    kubectl("apply", "-f", "-", input=json.dumps(obj))
    return kubectl.json("get", "sa", name, "-n", ns)


def _pod(ns: str, name: str, sa: str | None = None, **spec) -> str:
    s = {"containers": [{"name": "c", "image": "nginx"}], **spec}
    if sa:
        s["serviceAccountName"] = sa
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": s})


def _signing_key(cp):
    return serialization.load_pem_private_key((cp.api.pki.dir / "sa.key").read_bytes(), None)


def test_token_request_through_the_python_client(sa_control_plane, sakubectl, core, namespace, tmp_path):
    from kubernetes import client
    sa = _sa(sakubectl, namespace, "robot")
    before = time.time()
    tr = core.create_namespaced_service_account_token(
        "robot", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)))
    assert tr.spec.audiences == [ISSUER]
    assert tr.spec.expiration_seconds == 600
    exp = tr.status.expiration_timestamp.timestamp()
    assert before + 590 <= exp <= time.time() + 610
    c = _claims(tr.status.token)
    assert c["iss"] == ISSUER and c["aud"] == [ISSUER]
    assert c["sub"] == f"system:serviceaccount:{namespace}:robot"
    assert c["exp"] - c["iat"] == 600 and c["nbf"] == c["iat"]
    assert c["kubernetes.io"] == {"namespace": namespace,
                                  "serviceaccount": {"name": "robot", "uid": sa["metadata"]["uid"]}}
    # the token authenticates as the service account
    p = _whoami(sa_control_plane, tr.status.token, tmp_path)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{namespace}:robot"
    assert info["uid"] == sa["metadata"]["uid"]
    assert info["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    assert info["extra"]["authentication.kubernetes.io/credential-id"] == [f"JTI={c['jti']}"]
    # errors as upstream's
    from kubernetes.client.rest import ApiException
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service_account_token("robot", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=["x"], expiration_seconds=599)))
    assert e.value.status == 422 and "may not specify a duration less than 10 minutes" in e.value.body
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service_account_token("ghost", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[])))
    assert e.value.status == 404 and 'serviceaccounts \\"ghost\\" not found' in e.value.body


def test_kubectl_create_token_and_deleted_service_account(sa_control_plane, sakubectl, namespace, tmp_path):
    _sa(sakubectl, namespace, "robot")
    token = sakubectl("create", "token", "robot", "-n", namespace, "--duration", "15m").strip()
    c = _claims(token)
    assert c["exp"] - c["iat"] == 900
    assert _request(sa_control_plane, "/api/v1/namespaces", token)[0] == 200
    sakubectl("delete", "sa", "robot", "-n", namespace)
    deadline = time.monotonic() + 10
    while _request(sa_control_plane, "/api/v1/namespaces", token)[0] != 401:
        assert time.monotonic() < deadline, "the token of a deleted service account still authenticates"
        time.sleep(0.1)
    # a new account of the same name has another uid: the old token stays refused
    _sa(sakubectl, namespace, "robot")
    assert _request(sa_control_plane, "/api/v1/namespaces", token)[0] == 401


def test_expired_foreign_and_forged_tokens_are_401(sa_control_plane, sakubectl, namespace, tmp_path):
    sa = _sa(sakubectl, namespace, "robot")
    key = _signing_key(sa_control_plane)
    good = sat.encode(sat.make_claims(ISSUER, sa, [ISSUER], 600), key)
    assert _request(sa_control_plane, "/api/v1/namespaces", good)[0] == 200
    expired = sat.encode(sat.make_claims(ISSUER, sa, [ISSUER], 600, now=time.time() - 700), key)
    foreign = sat.encode(sat.make_claims("https://other.example", sa, [ISSUER], 600), key)
    other_key = sat.encode(sat.make_claims(ISSUER, sa, [ISSUER], 600), ec.generate_private_key(ec.SECP256R1()))
    wrong_aud = sat.encode(sat.make_claims(ISSUER, sa, ["vault"], 600), key)
    for token in (expired, foreign, other_key, wrong_aud, "garbage"):
        code, body, _ = _request(sa_control_plane, "/api/v1/namespaces", token)
        assert code == 401, token
        assert json.loads(body)["reason"] == "Unauthorized"
    p = _whoami(sa_control_plane, expired, tmp_path)
    assert p.returncode != 0 and "Unauthorized" in p.stderr


def test_token_bound_to_a_deleted_pod_is_refused(sa_control_plane, sakubectl, namespace, tmp_path):
    _sa(sakubectl, namespace, "robot")
    sakubectl("create", "-f", "-", input=_pod(namespace, "bound", "robot"))
    pod = sakubectl.json("get", "pod", "bound", "-n", namespace)
    token = sakubectl("create", "token", "robot", "-n", namespace, "--bound-object-kind", "Pod",
                      "--bound-object-name", "bound", "--bound-object-uid", pod["metadata"]["uid"]).strip()
    assert _claims(token)["kubernetes.io"]["pod"] == {"name": "bound", "uid": pod["metadata"]["uid"]}
    p = _whoami(sa_control_plane, token, tmp_path)
    assert p.returncode == 0, p.stderr
    extra = json.loads(p.stdout)["status"]["userInfo"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["bound"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    # binding to a pod of another account, or with a stale uid, is refused as upstream
    _sa(sakubectl, namespace, "other")
    p = sakubectl.run("create", "token", "other", "-n", namespace, "--bound-object-kind", "Pod",
                      "--bound-object-name", "bound", check=False)
    assert p.returncode != 0 and "cannot bind token for serviceaccount \"other\" to pod running with different " \
                                 "serviceaccount name." in p.stderr
    p = sakubectl.run("create", "token", "robot", "-n", namespace, "--bound-object-kind", "Pod",
                      "--bound-object-name", "bound", "--bound-object-uid", "0000", check=False)
    assert p.returncode != 0 and "does not match the UID in record" in p.stderr
    sakubectl("delete", "pod", "bound", "-n", namespace, "--grace-period=0", "--force")
    deadline = time.monotonic() + 10
    while _request(sa_control_plane, "/api/v1/namespaces", token)[0] != 401:
        assert time.monotonic() < deadline, "a token bound to a deleted pod still authenticates"
        time.sleep(0.1)


def test_pods_get_the_projected_token_volume(sa_control_plane, sakubectl, namespace):
    p = sakubectl.run("create", "-f", "-", input=_pod(namespace, "early"), check=False)
    assert p.returncode != 0
    assert (f'pods "early" is forbidden: error looking up service account {namespace}/default: '
            f'serviceaccount "default" not found') in p.stderr
    _sa(sakubectl, namespace, "default", imagePullSecrets=[{"name": "regcred"}])
    sakubectl("create", "-f", "-", input=_pod(namespace, "web", initContainers=[{"name": "i", "image": "busybox"}]))
    pod = sakubectl.json("get", "pod", "web", "-n", namespace)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    (vol,) = spec["volumes"]
    assert vol["name"].startswith("kube-api-access-")
    assert vol["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    for c in spec["initContainers"] + spec["containers"]:
        assert {"name": vol["name"], "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in c["volumeMounts"]
    # opting out on the pod or the account, or a mount of one's own at the path: no volume
    sakubectl("create", "-f", "-", input=_pod(namespace, "optout", automountServiceAccountToken=False))
    assert not sakubectl.json("get", "pod", "optout", "-n", namespace)["spec"].get("volumes")
    _sa(sakubectl, namespace, "quiet", automountServiceAccountToken=False)
    sakubectl("create", "-f", "-", input=_pod(namespace, "quiet", "quiet"))
    assert not sakubectl.json("get", "pod", "quiet", "-n", namespace)["spec"].get("volumes")
    sakubectl("create", "-f", "-", input=_pod(namespace, "own", containers=[{
        "name": "c", "image": "nginx", "volumeMounts": [{"name": "t", "mountPath":
                                                         "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
        volumes=[{"name": "t", "emptyDir": {}}]))
    assert [v["name"] for v in sakubectl.json("get", "pod", "own", "-n", namespace)["spec"]["volumes"]] == ["t"]
    # the kubelet's request for the projected token: pod-bound, 3607 s for the API's audience,
    # extended to a year with warnafter (--service-account-extend-token-expiration)
    token = sakubectl("create", "token", "default", "-n", namespace, "--duration", "3607s",
                      "--bound-object-kind", "Pod", "--bound-object-name", "web").strip()
    c = _claims(token)
    assert c["kubernetes.io"]["warnafter"] - c["iat"] == 3607
    assert c["exp"] - c["iat"] == 365 * 24 * 3600


def test_jwks_verifies_a_token_and_discovery(sa_control_plane, sakubectl, namespace):
    _sa(sakubectl, namespace, "robot")
    token = sakubectl("create", "token", "robot", "-n", namespace).strip()
    code, body, headers = _request(sa_control_plane, "/.well-known/openid-configuration", admin=True)
    assert code == 200
    cfg = json.loads(body)
    assert cfg["issuer"] == ISSUER
    assert cfg["jwks_uri"] == f"{sa_control_plane.url}/openid/v1/jwks"
    assert cfg["id_token_signing_alg_values_supported"] == ["ES256"]
    code, body, headers = _request(sa_control_plane, "/openid/v1/jwks", token)   # the account may read it
    assert code == 200 and headers["Content-Type"].startswith("application/jwk-set+json")
    (jwk,) = json.loads(body)["keys"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "kid": jwk["kid"]}
    num = lambda s: int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")  # noqa: E731
    pub = ec.EllipticCurvePublicNumbers(num(jwk["x"]), num(jwk["y"]), ec.SECP256R1()).public_key()
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        pub.verify(der, f"{head}.{payload}x".encode(), ec.ECDSA(hashes.SHA256()))
    # the subresource in discovery
    res = json.loads(sakubectl("get", "--raw", "/api/v1"))["resources"]
    assert {"name": "serviceaccounts/token", "singularName": "", "namespaced": True, "group": "authentication.k8s.io",
            "version": "v1", "kind": "TokenRequest", "verbs": ["create"]} in res
    pub_file = serialization.load_pem_public_key((sa_control_plane.api.pki.dir / "sa.pub").read_bytes())
    assert sat.key_id(pub_file) == jwk["kid"]


def test_in_cluster_config_of_the_python_client(sa_control_plane, sakubectl, namespace, tmp_path):
    """What a pod's client does with the projected files: load_incluster_config reads the token and
    ca.crt and talks to the API as the pod's service account."""
    from kubernetes import client
    from kubernetes.config.incluster_config import InClusterConfigLoader
    _sa(sakubectl, namespace, "default")
    sakubectl("create", "-f", "-", input=_pod(namespace, "app"))
    token = sakubectl("create", "token", "default", "-n", namespace, "--bound-object-kind", "Pod",
                      "--bound-object-name", "app").strip()
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_bytes((sa_control_plane.api.pki.dir / "ca.crt").read_bytes())
    cfg = client.Configuration()
    InClusterConfigLoader(str(tmp_path / "token"), str(tmp_path / "ca.crt"), environ={
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(sa_control_plane.api.port)}
    ).load_and_set(cfg)
    with client.ApiClient(cfg) as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace)
        assert [p.metadata.name for p in pods.items] == ["app"]
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:default"
        assert review.status.user_info.extra["authentication.kubernetes.io/pod-name"] == ["app"]


def test_token_review(sa_control_plane, sakubectl, core, namespace):
    """authentication.k8s.io/v1 TokenReview (what a kubelet's webhook authentication asks)."""
    from kubernetes import client
    sa = _sa(sakubectl, namespace, "robot")
    token = sakubectl("create", "token", "robot", "-n", namespace, "--audience", "vault").strip()
    auth = client.AuthenticationV1Api(core.api_client)
    r = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token,
                                                                                    audiences=["vault"])))
    assert r.status.authenticated is True and r.status.audiences == ["vault"]
    assert r.status.user.username == f"system:serviceaccount:{namespace}:robot"
    assert r.status.user.uid == sa["metadata"]["uid"]
    # for the API's own audience the same token does not authenticate
    r = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    assert not r.status.authenticated and "is invalid for the target audiences" in r.status.error
    r = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(
        token=sa_control_plane.token)))
    assert r.status.authenticated and r.status.user.username == "test-user"


def test_lifetimes_and_node_and_secret_bindings(sa_control_plane, sakubectl, namespace, tmp_path):
    _sa(sakubectl, namespace, "robot")
    # over --service-account-max-token-expiration (48h here): shortened, with upstream's warning
    p = sakubectl.run("create", "token", "robot", "-n", namespace, "--duration", "72h")
    assert "requested expiration of 259200 seconds shortened to 172800 seconds" in p.stderr
    c = _claims(p.stdout.strip())
    assert c["exp"] - c["iat"] == 172800
    # 3607 s for another audience is not extended
    sakubectl("create", "-f", "-", input=_pod(namespace, "p", "robot"))
    c = _claims(sakubectl("create", "token", "robot", "-n", namespace, "--duration", "3607s", "--audience", "vault",
                          "--bound-object-kind", "Pod", "--bound-object-name", "p").strip())
    assert c["exp"] - c["iat"] == 3607 and "warnafter" not in c["kubernetes.io"]
    # bound to a Node: valid while the node exists with that uid
    node = f"tok-{namespace}"[:63]
    sakubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))
    try:
        uid = sakubectl.json("get", "node", node)["metadata"]["uid"]
        token = sakubectl("create", "token", "robot", "-n", namespace, "--bound-object-kind", "Node",
                          "--bound-object-name", node).strip()
        assert _claims(token)["kubernetes.io"]["node"] == {"name": node, "uid": uid}
        p = _whoami(sa_control_plane, token, tmp_path)
        assert p.returncode == 0, p.stderr
        extra = json.loads(p.stdout)["status"]["userInfo"]["extra"]
        assert extra["authentication.kubernetes.io/node-name"] == [node]
        assert extra["authentication.kubernetes.io/node-uid"] == [uid]
    finally:
        sakubectl("delete", "node", node)
    deadline = time.monotonic() + 10
    while _request(sa_control_plane, "/api/v1/namespaces", token)[0] != 401:
        assert time.monotonic() < deadline, "a token bound to a deleted node still authenticates"
        time.sleep(0.1)
    # bound to a Secret
    sakubectl("create", "secret", "generic", "s", "-n", namespace, "--from-literal=a=b")
    token = sakubectl("create", "token", "robot", "-n", namespace, "--bound-object-kind", "Secret",
                      "--bound-object-name", "s").strip()
    assert _request(sa_control_plane, "/api/v1/namespaces", token)[0] == 200
    sakubectl("delete", "secret", "s", "-n", namespace)
    deadline = time.monotonic() + 10
    while _request(sa_control_plane, "/api/v1/namespaces", token)[0] != 401:
        assert time.monotonic() < deadline, "a token bound to a deleted secret still authenticates"
        time.sleep(0.1)
    p = sakubectl.run("create", "token", "robot", "-n", namespace, "--bound-object-kind", "Secret",
                      "--bound-object-name", "gone", check=False)
    assert p.returncode != 0 and 'secrets "gone" not found' in p.stderr


@pytest.mark.parametrize("body, code, message", [
    ({"spec": "x"}, 400, "must be objects"),
    ({"spec": {"expirationSeconds": "1h"}}, 400, "spec.expirationSeconds must be an integer"),
    ({"spec": {"expirationSeconds": (1 << 32) + 1}}, 422, "may not specify a duration larger than 2^32 seconds"),
    ({"metadata": {"name": "other"}}, 422, "must match the service account name if specified"),
    ({"spec": {"boundObjectRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}}}, 400,
     "cannot bind token to object of type apps/v1, Kind=Deployment"),
    ({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "nope"}}}, 404, 'pods "nope" not found'),
])
def test_bad_token_requests(sa_control_plane, sakubectl, namespace, body, code, message):
    _sa(sakubectl, namespace, "robot")
    status, out, _ = _request(sa_control_plane, f"/api/v1/namespaces/{namespace}/serviceaccounts/robot/token",
                              admin=True, body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                                **body})
    assert status == code, out
    assert message in json.loads(out)["message"]


def _metric(cp, name: str) -> float:
    text = _request(cp, "/metrics", admin=True)[1].decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_stale_tokens_still_authenticate_and_are_counted(sa_control_plane, sakubectl, namespace):
    sa = _sa(sakubectl, namespace, "robot")
    claims = sat.make_claims(ISSUER, sa, [ISSUER], 3600, now=time.time() - 100, warn_after=60)
    stale = sat.encode(claims, _signing_key(sa_control_plane))
    valid_before = _metric(sa_control_plane, "serviceaccount_valid_tokens_total")
    stale_before = _metric(sa_control_plane, "serviceaccount_stale_tokens_total")
    assert _request(sa_control_plane, "/api/v1/namespaces", stale)[0] == 200
    assert _metric(sa_control_plane, "serviceaccount_stale_tokens_total") == stale_before + 1
    fresh = sakubectl("create", "token", "robot", "-n", namespace).strip()
    assert _request(sa_control_plane, "/api/v1/namespaces", fresh)[0] == 200
    assert _metric(sa_control_plane, "serviceaccount_valid_tokens_total") == valid_before + 1
