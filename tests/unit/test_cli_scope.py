"""keyparity.cloudhsm.cli_scope: when a per-key CloudHSM CLI check has nothing to check for any
key of a profile (collected once, ``[every-key]``, instead of one skip per key)."""
from __future__ import annotations

from types import SimpleNamespace

from keyparity.cloudhsm.cli_scope import nothing_to_check


def profile(source_cli: bool = False, target_cli: bool = False, **key: object):
    keys = [SimpleNamespace(label="a", owner=None, share_with=()),
            SimpleNamespace(label="b", **{"owner": None, "share_with": (), **key})]
    return SimpleNamespace(source=SimpleNamespace(cloudhsm_cli=object() if source_cli else None),
                           target=SimpleNamespace(cloudhsm_cli=object() if target_cli else None),
                           keys=keys)


def test_without_the_cli_of_a_role_there_is_nothing_to_check_for_any_key():
    assert nothing_to_check(profile(), ["target"]) == (
        "nothing to check for any of the 2 keys: clusters.target has no cloudhsm_cli block "
        "(these facts come from the CloudHSM CLI)")
    assert nothing_to_check(profile(), ["source", "target"], note="why") == (
        "nothing to check for any of the 2 keys: clusters.source has no cloudhsm_cli block, "
        "clusters.target has no cloudhsm_cli block (these facts come from the CloudHSM CLI); "
        "why")


def test_with_the_cli_each_key_has_its_own_test():
    assert nothing_to_check(profile(target_cli=True), ["target"]) is None
    # one role missing is enough to have nothing to check
    assert "clusters.source has no" in nothing_to_check(profile(target_cli=True),
                                                        ["source", "target"])


def test_a_key_that_asks_for_the_field_keeps_a_test_per_key_which_then_fails_it():
    assert nothing_to_check(profile(owner="cu1"), ["target"], unless="owner") is None
    assert nothing_to_check(profile(share_with=("cu2",)), ["target"], unless="share_with") is None
    assert nothing_to_check(profile(owner="cu1"), ["target"], unless="share_with") == (
        "nothing to check for any of the 2 keys: clusters.target has no cloudhsm_cli block "
        "(these facts come from the CloudHSM CLI); no key sets share_with")
