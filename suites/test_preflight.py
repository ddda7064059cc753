"""Preflight (``-m preflight``): both clusters reachable and logged in, every inventory key on
the source and extractable (or marked rotate), the mechanisms the profile needs on each side.
Nothing is written to either token (the wrapping probe uses session objects only)."""
import pytest

from keyparity import preflight
from keyparity.migrate import locate

pytestmark = pytest.mark.preflight


@pytest.mark.parametrize("role", ["source", "target"])
def test_cluster_is_reachable_and_logged_in(role, request, hsm_evidence):
    cluster = request.getfixturevalue(f"{role}_cluster")
    hsm_evidence(**{f"{role}_token": cluster.info})
    assert cluster.session is not None


def test_key_is_on_the_source_and_extractable(inventory_key, source_cluster, hsm_evidence):
    side = locate(source_cluster, inventory_key, inventory_key.label)
    assert side is not None, f"{inventory_key.label!r} not found on {source_cluster.name}"
    extractable = preflight.extractable(side.key)
    hsm_evidence(preflight={"found": True, "extractable": extractable})
    if inventory_key.disposition == "rotate":
        return
    assert extractable, (f"{inventory_key.label!r} is not extractable: rotate it (generate on "
                         "the target, re-encrypt) or mark it disposition: rotate")


@pytest.mark.parametrize("role", ["source", "target"])
def test_cluster_offers_the_mechanisms_the_profile_needs(role, request, hsm_profile,
                                                         hsm_evidence):
    cluster = request.getfixturevalue(f"{role}_cluster")
    missing = preflight.missing_mechanisms(hsm_profile, role, cluster)
    hsm_evidence(**{f"{role}_missing_mechanisms": missing})
    assert not missing, f"{cluster.name} lacks: {', '.join(missing)}"


def test_tokens_accept_the_wrapping_parameters(hsm_profile, source_cluster, target_cluster,
                                               hsm_run, hsm_evidence):
    if hsm_profile.migration_mode != "migrate":
        pytest.skip("verify-only: nothing is wrapped")
    left, method = preflight.probe_wrapping(hsm_profile, source_cluster, target_cluster,
                                            hsm_run.run_id)
    hsm_evidence(wrapping={"method": method})
    assert not left, f"probe objects left behind: {left}"
