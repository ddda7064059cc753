"""The clusters as AWS reports them (``cloudhsmv2.describe_clusters``, read-only; also in
``-m preflight``): ACTIVE, in the declared mode (FIPS / NON_FIPS) and HSM type
(hsm1.medium / hsm2m.medium), with enough ACTIVE HSMs for the keys to stay available
(``aws.min_active_hsms``, default 2). Per cluster with an ``aws`` block (marker ``aws``); a
cluster without one is skipped (nothing to check) with "declared, not verified (no aws block)"
in the evidence - except the mode test of a production run, which fails: a production PASS
needs the mode verified through AWS (keyparity.policy.declared_only).
Each test records the values read under ``clusters.<role>`` in ``evidence.json``.
"""
import pytest

from keyparity.cloudhsm import aws

pytestmark = pytest.mark.preflight


def test_cluster_is_active(cloud_cluster):
    cloud_cluster.prove(aws.check_active)


def test_cluster_mode_and_hsm_type_are_as_declared(cloud_cluster):
    cloud_cluster.prove(aws.check_mode_and_type, mode=True)


def test_cluster_has_enough_active_hsms(cloud_cluster):
    cloud_cluster.prove(aws.check_active_hsms)
