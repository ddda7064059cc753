"""CloudHSM preconditions the guide does not mention (``-m preflight``: read-only, nothing is
written): the users on the target, quorum values and trusted-key wrapping of each source key,
the KMS custom key stores backed by either cluster, mutual TLS at least as strict on the target,
a recent source backup kept until every key is proven, and the key availability check of the
CloudHSM client. Each needs what it reads - a ``cloudhsm_cli`` block, an ``aws`` block, the
client's configuration file - and is skipped with that reason without it (SoftHSM)."""
import pytest

from keyparity.backends import backend_for
from keyparity.cloudhsm import aws, client_config, key_policy, kms_stores, lineage, mtls
from keyparity.cloudhsm import source_backups, users
from keyparity.outcome import prove

pytestmark = pytest.mark.preflight


def test_target_users_can_own_and_share_the_keys(hsm_profile, cloudhsm_clis, hsm_evidence,
                                                request):
    (target,) = cloudhsm_clis.need("target")
    source = cloudhsm_clis.of("source")
    keys = request.getfixturevalue("source_cli_keys") if source is not None else None
    check = users.check_target_users(
        hsm_profile, users.user_list(source) if source is not None else None,
        users.user_list(target), users.owners_of(keys) if keys is not None else None)
    hsm_evidence(cloudhsm_users=check.record())
    prove(check)


@pytest.mark.cloudhsm_cli("source")
def test_key_owner_quorum_and_trust_allow_the_move(inventory_key, source_cli_key, hsm_profile,
                                                   cloudhsm_clis, hsm_evidence):
    """One test per key for the three (each test per key costs every run of the suites): the
    migrating source user owns the key (only the owner may wrap it: `key list --verbose`
    names the owner), its key quorum values can be carried by the backend, and a
    wrap-with-trusted key can be wrapped."""
    (source,) = cloudhsm_clis.need("source")
    checks = [key_policy.check_quorum_preflight(inventory_key, source_cli_key,
                                                backend_for(hsm_profile)),
              key_policy.check_trusted_preflight(inventory_key, source_cli_key,
                                                 hsm_profile.wrapping.trusted,
                                                 cluster=hsm_profile.source.name)]
    record = {"quorum": checks[0].record(), "trusted": checks[1].record()}
    if hsm_profile.migration_mode == "migrate" and inventory_key.disposition != "rotate":
        # the user the key is wrapped as: its owner's login with per-owner migration
        migrating = cloudhsm_clis.of("source", hsm_profile.owner_of(inventory_key))
        assert migrating is not None  # the source has a CLI (need), and every owner a login
        checks.insert(0, key_policy.check_owner(inventory_key, source_cli_key, migrating.user,
                                                hsm_profile.source.name))
        record["source_owner"] = checks[0].record()
    hsm_evidence(**record)
    prove(*checks)


def test_kms_custom_key_stores_can_stay_available(key_stores, aws_clusters, hsm_profile,
                                                  hsm_evidence):
    facts = {}
    for cluster in hsm_profile.clusters:
        if cluster.aws is not None and any(s.cluster_id == cluster.aws.cluster_id
                                           for s in key_stores):
            try:
                facts[cluster.aws.cluster_id] = aws_clusters.get(cluster.role)
            except aws.AwsError as exc:
                pytest.fail(f"{cluster.name}: {exc}", pytrace=False)
    check = kms_stores.check_stores(key_stores, facts)
    source = hsm_profile.source.aws.cluster_id if hsm_profile.source.aws else ""
    target = hsm_profile.target.aws.cluster_id if hsm_profile.target.aws else None
    hsm_evidence(cloudhsm_kms_key_stores=kms_stores.kms_facts(key_stores, source, target))
    hsm_evidence(cloudhsm_kms=check.record())
    prove(check)


def test_mutual_tls_is_at_least_as_strict_on_the_target(cloudhsm_clis, hsm_profile,
                                                        hsm_evidence):
    source, target = cloudhsm_clis.need("source", "target")
    check = mtls.check_mtls(mtls.read(source, hsm_profile.source.hsm_type),
                            mtls.read(target, hsm_profile.target.hsm_type))
    hsm_evidence(cloudhsm_mtls=check.record())
    prove(check)


def test_a_recent_source_backup_is_kept(hsm_profile, hsm_evidence):
    spec = hsm_profile.source.aws
    if spec is None:
        pytest.skip(f"nothing to check: clusters.source ({hsm_profile.source.name}) has no aws "
                    "block to read its backups with")
    try:
        state = lineage.read(spec)
    except aws.AwsError as exc:
        pytest.fail(f"{hsm_profile.source.name}: {exc}", pytrace=False)
    check = source_backups.check_source_backup(state.backups, None, spec.backup_max_age_days,
                                               cluster_id=state.cluster_id,
                                               retention=state.backup_retention)
    hsm_evidence(cloudhsm_source_backup=check.record())
    prove(check)


def test_the_key_availability_check_is_on(role, hsm_profile, hsm_evidence):
    """The PKCS #11 library's configuration (cloudhsm-pkcs11.cfg) and, when the CloudHSM CLI
    moves the keys, the CLI's own (cloudhsm-cli.cfg beside its executable)."""
    cluster = getattr(hsm_profile, role)
    checks = {}
    path = cluster.client_config or (client_config.DEFAULT_PATH if cluster.aws else None)
    if path is not None:
        checks[f"cloudhsm_client_config_{role}"] = client_config.check_key_availability(path)
    if cluster.cloudhsm_cli is not None and hsm_profile.migration_backend == "cloudhsm-cli":
        checks[f"cloudhsm_cli_config_{role}"] = client_config.check_key_availability(
            client_config.cli_config_path(cluster.cloudhsm_cli.path))
    if not checks:
        pytest.skip(f"nothing to check: clusters.{role} ({cluster.name}) is not a CloudHSM "
                    "cluster here (no aws block, no client_config, and no CloudHSM CLI moving "
                    "the keys)")
    hsm_evidence(**{name: hsm_profile.shown_paths(check.record())
                    for name, check in checks.items()})
    prove(*checks.values())
