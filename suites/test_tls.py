"""TLS and certificate trust (``-m tls``), per cluster with a ``tls`` block in the profile.

CloudHSM secures the client <-> HSM link with two nested TLS connections. Outer: mutual TLS
with the server hosting the HSM (port 2223), whose self-signed certificate must be in the
client's trust directory, the client presenting ``client.crt`` issued by ``customerCA.crt``
(or the package default). Inner: the HSM presents the cluster certificate, issued by
``customerCA.crt`` when the cluster was initialised for the CSR made with the HSM's key; the
HSM certificate chains to both the AWS and the manufacturer roots (pinned by fingerprint).

Nothing is written to either cluster and no login is needed, so these tests are also part
of ``-m preflight``. A cluster without ``tls``, or a check whose files the block does not
name, is skipped with the reason; every test records its certificates (subject, issuer,
serial, SHA-256, validity, chain) in the evidence under ``tls``.
"""
import pytest

from keyparity.trust import chains, handshake

pytestmark = [pytest.mark.tls, pytest.mark.preflight]


def test_cluster_certificate_chains_to_customer_ca(cluster_tls):
    cert, ca = cluster_tls.certificates("cluster_certificate", "customer_ca")
    cluster_tls.prove(chains.check_cluster_certificate(cert, ca, **cluster_tls.validity))


def test_hsm_certificate_chains_to_the_aws_and_manufacturer_roots(cluster_tls):
    (hsm,) = cluster_tls.certificates("hsm_certificate")
    aws = cluster_tls.optional("aws_hardware_certificate", "aws_root")
    maker = cluster_tls.optional("manufacturer_hardware_certificate", "manufacturer_root")
    if aws[0] is None and maker[0] is None:
        cluster_tls.skip(f"clusters.{cluster_tls.role}.tls names no hardware certificate "
                         "(aws_hardware_certificate, manufacturer_hardware_certificate): "
                         "the HSM's identity is not checked")
    spec = cluster_tls.spec
    cluster_tls.prove(chains.check_hsm_identity(
        hsm, aws_hardware=aws[0], aws_root=aws[1], aws_root_sha256=spec.aws_root_sha256,
        manufacturer_hardware=maker[0], manufacturer_root=maker[1],
        manufacturer_root_sha256=spec.manufacturer_root_sha256, now=cluster_tls.now))


def test_cluster_csr_key_matches_the_hsm_certificate(cluster_tls):
    csr = cluster_tls.csr("cluster_csr")
    (hsm,) = cluster_tls.certificates("hsm_certificate")
    cluster_tls.prove(chains.check_csr_matches(csr, hsm))


def test_client_certificate_is_issued_by_the_customer_ca_and_matches_its_key(cluster_tls):
    cert, ca = cluster_tls.certificates("client_certificate", "customer_ca")
    (key,) = cluster_tls.paths("client_key")
    (default,) = cluster_tls.optional("default_client_certificate")
    cluster_tls.prove(chains.check_client_certificate(
        cert, key, cluster_tls.key_password(), ca, default_cert=default,
        **cluster_tls.validity))


def test_mutual_tls_handshake(cluster_tls, tls_endpoint, tls_address):
    if tls_endpoint.reason:
        cluster_tls.skip(tls_endpoint.reason)
    spec = cluster_tls.spec
    check = handshake.check_handshake(
        tls_address.host, tls_address.port, client_cert=spec.client_certificate,
        client_key=spec.client_key, key_password=cluster_tls.key_password(),
        trust_dir=spec.trust_dir, timeout=spec.timeout_s)
    cluster_tls.prove(check, endpoint=tls_address.record())
