"""The chart's AWS visibility (``aws.visibility.enabled``), rendered offline with the Helm SDK.

* off (the default) renders none of its objects; on renders exactly the proxy, the DNS forwarder
  and the webhook (ServiceAccount, Deployment, Service each), the proxy CA (Secret + certificate
  ConfigMap), the webhook's TLS Secret, RBAC and the ``MutatingWebhookConfiguration``; ``helm lint``
  is clean both ways and every manifest validates strictly against Kubernetes' schemas;
* each container's environment is exactly what its settings (``agent.aws.settings``) read, loads
  through them, and names the mounts, ports and Services the chart renders;
* the webhook's ``caBundle`` verifies its serving certificate in a real TLS handshake for the
  Service's DNS names; mitmproxy loads the proxy CA Secret as its confdir without writing to it,
  and leaves issued with that CA's key verify against the ConfigMap's certificate;
* private keys: the proxy CA's only in its Secret, mounted by the proxy only; the webhook's serving
  key only in its TLS Secret; the webhook CA's nowhere;
* RBAC is least privilege; the Deployments are locked down, probed and not opted in themselves.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import re
import ssl
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mitmproxy.certs import DEFAULT_DHPARAM, CertStore

from agent.aws.settings import AwsProxySettings, AwsWebhookSettings, DnsForwarderSettings
from agent.settings import load
from tests.support.chart import CHART, NS, env, find, merged, rendered
from tests.support.tls import handshake

ON: dict[str, Any] = {"aws": {"visibility": {"enabled": True}}}
LABEL = "network-mapper.otterize.com/aws-visibility"
PROXY, DNS, WEBHOOK = "network-mapper-aws-proxy", "network-mapper-aws-dns", "network-mapper-aws-webhook"
PROXY_CA, PROXY_CA_CERT = "network-mapper-aws-proxy-ca", "network-mapper-aws-proxy-ca-cert"
WEBHOOK_TLS, MWC = "network-mapper-aws-webhook-tls", "network-mapper-aws-visibility"
WEBHOOK_NAMES = [f"{WEBHOOK}.{NS}.svc", f"{WEBHOOK}.{NS}.svc.cluster.local"]
AWS_OBJECTS = {
    (kind, name) for name in (PROXY, DNS, WEBHOOK) for kind in ("ServiceAccount", "Deployment", "Service")
}
AWS_OBJECTS |= {("Secret", PROXY_CA), ("ConfigMap", PROXY_CA_CERT), ("Secret", WEBHOOK_TLS)}
AWS_OBJECTS |= {("Role", WEBHOOK), ("RoleBinding", WEBHOOK), ("MutatingWebhookConfiguration", MWC)}
AWS_OBJECTS |= {("ClusterRole", f"{WEBHOOK}-{NS}"), ("ClusterRoleBinding", f"{WEBHOOK}-{NS}")}
MAPPER_URL = f"http://network-mapper.{NS}.svc.cluster.local:9090/query"
TOKEN_REF = {"secretKeyRef": {"name": "network-mapper", "key": "agent-token"}}
PROXY_HOST = f"{PROXY}.{NS}.svc.cluster.local"
EXPECTED_ENV: dict[str, dict[str, Any]] = {
    PROXY: {
        "OTTERIZE_TELEMETRY_ENABLED": "true",
        "NETWORK_MAPPER_TOKEN": TOKEN_REF,
        "OTTERIZE_MAPPER_API": MAPPER_URL,
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "NODE_NAME": {"fieldRef": {"fieldPath": "spec.nodeName"}},
        "AWS_PROXY_LISTEN_ADDRESS": "0.0.0.0:8443",
        "AWS_PROXY_HEALTH_ADDRESS": "0.0.0.0:9094",
        "AWS_PROXY_CONFDIR": "/etc/network-mapper/proxy-ca",
    },
    DNS: {
        "OTTERIZE_TELEMETRY_ENABLED": "true",
        "AWS_DNS_LISTEN_ADDRESS": "0.0.0.0:5353",
        "AWS_DNS_HEALTH_ADDRESS": "0.0.0.0:9095",
        "AWS_DNS_PROXY_HOST": PROXY_HOST,
        "AWS_DNS_PROXY_HEALTH_URL": f"http://{PROXY_HOST}:9094/healthz",
        "AWS_DNS_HEALTH_INTERVAL": "2",
        "AWS_DNS_ANSWER_TTL": "5",
    },
    WEBHOOK: {
        "OTTERIZE_TELEMETRY_ENABLED": "true",
        "AWS_WEBHOOK_LISTEN_ADDRESS": "0.0.0.0:8443",
        "AWS_WEBHOOK_FORWARDER_SERVICE": f"{NS}/{DNS}",
        "AWS_WEBHOOK_CLUSTER_DOMAIN": "cluster.local",
        "AWS_WEBHOOK_TLS_SECRET": f"{NS}/{WEBHOOK_TLS}",
        "AWS_WEBHOOK_CONFIGURATION": MWC,
        "AWS_WEBHOOK_RENEW_BEFORE": str(30 * 86400),
        "AWS_WEBHOOK_CERT_CHECK_INTERVAL": "3600",
    },
}
SETTINGS = {PROXY: AwsProxySettings, DNS: DnsForwarderSettings, WEBHOOK: AwsWebhookSettings}
COMMANDS = {
    PROXY: "network-mapper-aws-proxy",
    DNS: "network-mapper-aws-dns-forwarder",
    WEBHOOK: "network-mapper-aws-webhook",
}
PROBES = {PROXY: (9094, "HTTP"), DNS: (9095, "HTTP"), WEBHOOK: (8443, "HTTPS")}
PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----")


def with_aws(**visibility: Any) -> dict[str, Any]:
    return merged(ON, {"aws": {"visibility": visibility}})


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return rendered(ON)[0]


def container(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (only,) = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def secret_text(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def pem_cert(text: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode() if isinstance(text, str) else text)


def public_der(key_or_cert: Any) -> bytes:
    public = key_or_cert.public_key()
    return bytes(
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def strings(value: Any, where: str) -> list[tuple[str, str]]:
    """Every string leaf of an object (keys included), with its path."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [(f"{where}.{k}", str(k)), *strings(v, f"{where}.{k}")]]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in strings(v, f"{where}[{i}]")]
    return [(where, value)] if isinstance(value, str) else []


def decoded(text: str) -> str:
    """The text, or what it decodes to when it is base64 (Secret data, caBundle)."""
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return text


# -- on and off ----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [pytest.param({}, id="off"), pytest.param(ON, id="on")])
def test_lint_is_clean(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NS)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize(
    "values", [pytest.param({}, id="default"), pytest.param(with_aws(enabled=False), id="set-false")]
)
def test_off_renders_none_of_it(values: dict[str, Any]) -> None:
    docs, notes = rendered(values)
    kinds_names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not kinds_names & AWS_OBJECTS
    assert not [name for _, name in kinds_names if "aws" in name]
    assert "MutatingWebhookConfiguration" not in {kind for kind, _ in kinds_names}
    assert LABEL not in notes


def test_on_renders_exactly_the_aws_objects_besides_the_rest(docs: list[dict[str, Any]]) -> None:
    off = {(d["kind"], d["metadata"]["name"]) for d in rendered({})[0]}
    on = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(on) == len(set(on))
    assert set(on) - off == AWS_OBJECTS
    assert off <= set(on)
    # The mapper's own role is not widened by AWS visibility.
    assert find(docs, "ClusterRole", f"network-mapper-{NS}") == find(
        rendered({})[0], "ClusterRole", f"network-mapper-{NS}"
    )
    _, notes = rendered(ON)
    assert f'{LABEL}: "true"' in notes


def test_every_manifest_validates_strictly(docs: list[dict[str, Any]]) -> None:
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


# -- environment and wiring ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_ENV))
def test_each_container_gets_exactly_its_environment(docs: list[dict[str, Any]], name: str) -> None:
    found = container(docs, name)
    assert found["command"] == [COMMANDS[name]]
    assert env(found) == EXPECTED_ENV[name]
    mapper = container(docs, "network-mapper")
    assert (found["image"], found["imagePullPolicy"]) == (mapper["image"], mapper["imagePullPolicy"])
    # Every variable is one its settings read (the telemetry opt-out reaches every container).
    variables = {f.metadata["env"] for f in SETTINGS[name].__dataclass_fields__.values()}
    assert set(env(found)) - {"OTTERIZE_TELEMETRY_ENABLED"} <= variables


def test_the_telemetry_opt_out_reaches_the_aws_containers() -> None:
    docs = rendered(merged(ON, {"global": {"telemetry": {"enabled": False}}}))[0]
    for name in EXPECTED_ENV:
        assert env(container(docs, name))["OTTERIZE_TELEMETRY_ENABLED"] == "false", name


def loaded(docs: list[dict[str, Any]], name: str) -> Any:
    """The component's settings as it builds them from its rendered environment."""
    variables = {k: v if isinstance(v, str) else "secret" for k, v in env(container(docs, name)).items()}
    return load(SETTINGS[name], [], variables)


def test_the_proxy_finds_its_ca_where_the_secret_is_mounted(docs: list[dict[str, Any]]) -> None:
    settings = loaded(docs, PROXY)
    proxy = container(docs, PROXY)
    (sniffer,) = find(docs, "DaemonSet", "network-mapper-sniffer")["spec"]["template"]["spec"]["containers"]
    assert settings.mapper_url == env(sniffer)["OTTERIZE_MAPPER_API"]  # as the other producers get it
    (mount,) = [m for m in proxy["volumeMounts"] if m["mountPath"] == str(settings.confdir)]
    assert mount["readOnly"] is True
    volumes = find(docs, "Deployment", PROXY)["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == PROXY_CA
    assert "items" not in volume["secret"]  # the whole confdir: the CA and the DH parameters
    assert port_number(proxy, "https") == int(settings.listen_address.rsplit(":", 1)[1])
    assert port_number(proxy, "health") == int(settings.health_address.rsplit(":", 1)[1])


def test_the_forwarder_points_at_the_proxy_service_and_listens_behind_its_own(
    docs: list[dict[str, Any]],
) -> None:
    settings = loaded(docs, DNS)
    forwarder = container(docs, DNS)
    assert (settings.health_interval, settings.answer_ttl) == (2.0, 5)
    assert str(settings.resolv_conf) == "/etc/resolv.conf" and not settings.upstream  # the cluster DNS
    assert find(docs, "Deployment", DNS)["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    proxy_service = find(docs, "Service", PROXY)
    assert settings.proxy_host == f"{proxy_service['metadata']['name']}.{NS}.svc.cluster.local"
    health = next(p for p in proxy_service["spec"]["ports"] if p["name"] == "health")
    assert settings.proxy_health_url == f"http://{settings.proxy_host}:{health['port']}/healthz"
    assert port_number(container(docs, PROXY), health["targetPort"]) == 9094
    listen = int(settings.listen_address.rsplit(":", 1)[1])
    assert {
        (p["containerPort"], p["protocol"]) for p in forwarder["ports"] if p["name"].startswith("dns")
    } == {
        (listen, "UDP"),
        (listen, "TCP"),
    }


def test_the_webhook_reads_its_tls_from_its_secret_and_the_proxy_certificate_where_mounted(
    docs: list[dict[str, Any]],
) -> None:
    settings = loaded(docs, WEBHOOK)
    webhook = container(docs, WEBHOOK)
    volumes = {v["name"]: v for v in find(docs, "Deployment", WEBHOOK)["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in webhook["volumeMounts"]}
    assert all(m["readOnly"] is True for m in mounts.values())
    # Through the API (and renewed there), never a mounted copy that would go stale at renewal.
    assert settings.tls_secret == f"{NS}/{WEBHOOK_TLS}"
    assert all(v.get("secret", {}).get("secretName") != WEBHOOK_TLS for v in volumes.values())
    proxy_ca = volumes[mounts[str(settings.proxy_ca_file.parent)]["name"]]
    assert proxy_ca["configMap"]["name"] == PROXY_CA_CERT
    assert [i["path"] for i in proxy_ca["configMap"]["items"]] == [settings.proxy_ca_file.name]
    namespace, service = settings.forwarder_service.split("/")
    assert find(docs, "Service", service)["metadata"]["namespace"] == namespace == NS
    assert port_number(webhook, "https") == int(settings.listen_address.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("name", "ports"),
    [
        (PROXY, [("https", 443, "TCP", 8443), ("health", 9094, "TCP", 9094)]),
        (DNS, [("dns", 53, "UDP", 5353), ("dns-tcp", 53, "TCP", 5353)]),
        (WEBHOOK, [("https", 443, "TCP", 8443)]),
    ],
)
def test_each_service_selects_its_pods_and_maps_its_ports(
    docs: list[dict[str, Any]], name: str, ports: list[tuple[str, int, str, int]]
) -> None:
    service = find(docs, "Service", name)
    deployment = find(docs, "Deployment", name)
    found = container(docs, name)
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    rendered_ports = []
    for port in service["spec"]["ports"]:
        (target,) = [p for p in found["ports"] if p["name"] == port["targetPort"]]
        assert target["protocol"] == port["protocol"]
        rendered_ports.append((port["name"], port["port"], port["protocol"], target["containerPort"]))
    assert rendered_ports == ports


def test_the_cluster_domain_value_reaches_the_names() -> None:
    docs = rendered(merged(ON, {"clusterDomain": "corp.internal"}))[0]
    assert env(container(docs, WEBHOOK))["AWS_WEBHOOK_CLUSTER_DOMAIN"] == "corp.internal"
    assert env(container(docs, DNS))["AWS_DNS_PROXY_HOST"] == f"{PROXY}.{NS}.svc.corp.internal"
    cert = pem_cert(secret_text(find(docs, "Secret", WEBHOOK_TLS), "tls.crt"))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        f"{WEBHOOK}.{NS}.svc",
        f"{WEBHOOK}.{NS}.svc.corp.internal",
    ]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("healthInterval", 6),
        ("healthInterval", 0),
        ("healthInterval", "soon"),
        ("answerTTL", 6),
        ("answerTTL", 0),
        ("answerTTL", 2.5),
    ],
)
def test_fail_open_bounds_are_enforced(setting: str, value: Any) -> None:
    # The schema rejects them first (a template check stays for values given without it).
    with pytest.raises(helm.errors.HelmError, match=f"dnsForwarder[./]{setting}"):
        rendered(with_aws(dnsForwarder={setting: value}))


def test_fail_open_bounds_accept_what_the_forwarder_accepts() -> None:
    docs = rendered(with_aws(dnsForwarder={"healthInterval": 0.5, "answerTTL": 1}))[0]
    assert (loaded(docs, DNS).health_interval, loaded(docs, DNS).answer_ttl) == (0.5, 1)
    docs = rendered(with_aws(dnsForwarder={"healthInterval": 5, "answerTTL": 5}))[0]
    assert (loaded(docs, DNS).health_interval, loaded(docs, DNS).answer_ttl) == (5.0, 5)


# -- the webhook's configuration and certificates ------------------------------------------------


def test_the_webhook_configuration(docs: list[dict[str, Any]]) -> None:
    (hook,) = copy.deepcopy(find(docs, "MutatingWebhookConfiguration", MWC)["webhooks"])
    ca_bundle = hook["clientConfig"].pop("caBundle")
    assert hook == {
        "name": "aws-visibility.network-mapper.otterize.com",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"namespace": NS, "name": WEBHOOK, "path": "/mutate", "port": 443}},
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "objectSelector": {"matchLabels": {LABEL: "true"}},
        "namespaceSelector": {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NS]}]
        },
        "failurePolicy": "Ignore",
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": 5,
        "reinvocationPolicy": "Never",
    }
    assert base64.b64decode(ca_bundle) == base64.b64decode(
        find(docs, "Secret", WEBHOOK_TLS)["data"]["ca.crt"]
    )
    assert hook["clientConfig"]["service"]["port"] in {
        p["port"] for p in find(docs, "Service", WEBHOOK)["spec"]["ports"]
    }


def test_the_ca_bundle_verifies_the_serving_certificate(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    (hook,) = find(docs, "MutatingWebhookConfiguration", MWC)["webhooks"]
    ca_pem = base64.b64decode(hook["clientConfig"]["caBundle"]).decode()
    ca = pem_cert(ca_pem)
    secret = find(docs, "Secret", WEBHOOK_TLS)
    assert secret["type"] == "kubernetes.io/tls"
    cert_pem, key_pem = secret_text(secret, "tls.crt"), secret_text(secret, "tls.key")
    cert = pem_cert(cert_pem)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == WEBHOOK_NAMES
    assert public_der(serialization.load_pem_private_key(key_pem.encode(), None)) == public_der(cert)
    for hostname in WEBHOOK_NAMES:  # as kube-apiserver calls the Service
        handshake(tmp_path, ca_pem, cert_pem, key_pem, hostname)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path, ca_pem, cert_pem, key_pem, f"{WEBHOOK}.elsewhere.svc")
    other_ca = secret_text(find(docs, "Secret", PROXY_CA), "mitmproxy-ca.pem")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path, PRIVATE_KEY.sub("", other_ca), cert_pem, key_pem, WEBHOOK_NAMES[0])


def test_mitmproxy_loads_the_ca_secret_as_a_read_only_confdir(
    docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    secret = find(docs, "Secret", PROXY_CA)
    confdir = tmp_path / "proxy-ca"
    confdir.mkdir()
    for key in secret["data"]:
        (confdir / key).write_text(secret_text(secret, key))
    before = sorted(p.name for p in confdir.iterdir())
    assert before == ["mitmproxy-ca.pem", "mitmproxy-dhparam.pem"]
    assert (confdir / "mitmproxy-dhparam.pem").read_bytes().strip() == DEFAULT_DHPARAM.strip()
    store = CertStore.from_store(confdir, "mitmproxy", 2048)
    assert sorted(p.name for p in confdir.iterdir()) == before  # nothing written to the mount
    distributed = find(docs, "ConfigMap", PROXY_CA_CERT)["data"]["ca.crt"]
    assert store.default_ca.to_pem() == pem_cert(distributed).public_bytes(serialization.Encoding.PEM)


def test_leaves_issued_by_the_proxy_ca_verify_against_the_distributed_certificate(
    docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The chart's CA works as a CA for strict OpenSSL clients: a leaf signed with the Secret's key,
    its AuthorityKeyIdentifier being the CA's SubjectKeyIdentifier (RFC 5280 4.2.1.1, which
    mitmproxy 11.0's own leaves do not follow for a CA made by Go), verifies against the ConfigMap."""
    pem = secret_text(find(docs, "Secret", PROXY_CA), "mitmproxy-ca.pem")
    ca_key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    distributed = find(docs, "ConfigMap", PROXY_CA_CERT)["data"]["ca.crt"]
    ca = pem_cert(distributed)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    host = "s3.eu-west-1.amazonaws.com"
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    leaf_pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    handshake(tmp_path, distributed, leaf_pem, key_pem, host)
    with pytest.raises(ssl.SSLCertVerificationError):  # and only against it
        webhook_ca = base64.b64decode(find(docs, "Secret", WEBHOOK_TLS)["data"]["ca.crt"]).decode()
        handshake(tmp_path, webhook_ca, leaf_pem, key_pem, host)


def test_private_keys_are_only_where_they_must_be(docs: list[dict[str, Any]]) -> None:
    keys: dict[tuple[str, str, str], str] = {}
    for doc in docs:
        for where, text in strings(doc, ""):
            for match in PRIVATE_KEY.finditer(decoded(text)):
                keys[(doc["kind"], doc["metadata"]["name"], where)] = match.group(0)
    assert set(keys) == {
        ("Secret", PROXY_CA, ".data.mitmproxy-ca.pem"),
        ("Secret", WEBHOOK_TLS, ".data.tls.key"),
    }
    proxy_key = serialization.load_pem_private_key(
        keys[("Secret", PROXY_CA, ".data.mitmproxy-ca.pem")].encode(), None
    )
    # The proxy's Secret: its key followed by its certificate, in mitmproxy's format.
    pem = secret_text(find(docs, "Secret", PROXY_CA), "mitmproxy-ca.pem")
    assert [m.group(1) for m in PEM_BLOCK.finditer(pem)] == ["RSA PRIVATE KEY", "CERTIFICATE"]
    assert public_der(proxy_key) == public_der(pem_cert(pem[pem.index("-----BEGIN CERTIFICATE") :]))
    # The ConfigMap: the certificate of that very key, and nothing else.
    distributed = find(docs, "ConfigMap", PROXY_CA_CERT)["data"]
    assert list(distributed) == ["ca.crt"]
    assert [m.group(1) for m in PEM_BLOCK.finditer(distributed["ca.crt"])] == ["CERTIFICATE"]
    assert public_der(pem_cert(distributed["ca.crt"])) == public_der(proxy_key)
    # The webhook CA signed the serving certificate and was dropped: its key is in no object.
    (hook,) = find(docs, "MutatingWebhookConfiguration", MWC)["webhooks"]
    webhook_ca = pem_cert(base64.b64decode(hook["clientConfig"]["caBundle"]))
    found = {public_der(serialization.load_pem_private_key(k.encode(), None)) for k in keys.values()}
    assert public_der(webhook_ca) not in found
    # The proxy CA's Secret is mounted by the proxy and nothing else.
    mounted_by = {
        d["metadata"]["name"]
        for d in docs
        if d["kind"] in {"Deployment", "DaemonSet"}
        for v in d["spec"]["template"]["spec"].get("volumes", [])
        if v.get("secret", {}).get("secretName") == PROXY_CA
    }
    assert mounted_by == {PROXY}


# -- RBAC and the workloads ----------------------------------------------------------------------


def test_rbac_is_least_privilege(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        for rule in doc.get("rules", []) if doc["kind"] in {"Role", "ClusterRole"} else []:
            assert "*" not in [
                *rule["verbs"],
                *rule["resources"],
                *rule["apiGroups"],
                *rule.get("resourceNames", []),
            ]
    assert find(docs, "ClusterRole", f"{WEBHOOK}-{NS}")["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["network-mapper-aws-ca-bundle"],
            "verbs": ["get", "update"],
        },
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [MWC],
            "verbs": ["get", "patch"],
        },
    ]
    assert AwsWebhookSettings().bundle_configmap == "network-mapper-aws-ca-bundle"
    role = find(docs, "Role", WEBHOOK)
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "resourceNames": [DNS], "verbs": ["get"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [WEBHOOK_TLS],
            "verbs": ["get", "update"],
        },
    ]
    bound: dict[str, set[tuple[str, str]]] = {}
    for doc in docs:
        if doc["kind"] in {"RoleBinding", "ClusterRoleBinding"}:
            for subject in doc["subjects"]:
                bound.setdefault(subject["name"], set()).add((doc["roleRef"]["kind"], doc["roleRef"]["name"]))
    assert bound[WEBHOOK] == {("ClusterRole", f"{WEBHOOK}-{NS}"), ("Role", WEBHOOK)}
    assert PROXY not in bound and DNS not in bound
    for name in (f"{WEBHOOK}-{NS}", WEBHOOK):
        binding = find(docs, "ClusterRoleBinding" if name.endswith(NS) else "RoleBinding", name)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": WEBHOOK, "namespace": NS}]
    for name in (PROXY, DNS):  # no API access: not even a token in the pod
        assert find(docs, "ServiceAccount", name)["automountServiceAccountToken"] is False
        assert (
            find(docs, "Deployment", name)["spec"]["template"]["spec"]["automountServiceAccountToken"]
            is False
        )
    assert find(docs, "ServiceAccount", WEBHOOK).get("automountServiceAccountToken", True) is True


@pytest.mark.parametrize("name", sorted(PROBES))
def test_each_deployment_is_locked_down_probed_and_not_opted_in(
    docs: list[dict[str, Any]], name: str
) -> None:
    deployment = find(docs, "Deployment", name)
    template = deployment["spec"]["template"]
    spec = template["spec"]
    assert spec["serviceAccountName"] == name
    assert deployment["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"]
    assert LABEL not in template["metadata"]["labels"]
    assert LABEL not in template["metadata"].get("annotations", {})
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    found = container(docs, name)
    context = found["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    port, scheme = PROBES[name]
    for probe in ("readinessProbe", "livenessProbe"):
        get = found[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert port_number(found, get["port"]) == port
        assert get.get("scheme", "HTTP") == scheme


def test_resources_and_scheduling_come_from_the_values() -> None:
    resources = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}}
    scheduling = {"nodeSelector": {"pool": "system"}, "tolerations": [{"operator": "Exists"}]}
    each = {"resources": resources, **scheduling}
    docs = rendered(with_aws(proxy=each, dnsForwarder=each, webhook=each))[0]
    for name in PROBES:
        assert container(docs, name)["resources"] == resources
        spec = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert {k: spec[k] for k in scheduling} == scheduling
    # Defaults: the measured figures of values.yaml.
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["aws"]["visibility"]
    for name, key in ((PROXY, "proxy"), (DNS, "dnsForwarder"), (WEBHOOK, "webhook")):
        assert container(rendered(ON)[0], name)["resources"] == defaults[key]["resources"]
