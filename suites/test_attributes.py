"""Attribute parity: every standard attribute of the target key equals the source's, but for
the differences C_UnwrapKey is expected to make (each with its reason) and those the
inventory intends; and key usage against the key's role."""
import pytest

from keyparity import roles
from keyparity.hsm import attributes


def test_target_attributes_match_source(migrated, hsm_evidence):
    spec = migrated.spec
    source = attributes.read_standard(migrated.source.key)
    target = attributes.read_standard(migrated.target.key)
    diffs = attributes.compare(source, target, target_label=spec.target_label,
                               overrides=spec.attributes, intended=spec.expected_differences)
    hsm_evidence(attributes={"source": source, "target": target,
                             "differences": [d.__dict__ for d in diffs]})
    unexpected = [d for d in diffs if not d.expected]
    assert not unexpected, "attributes differ:\n" + attributes.table(diffs)


def test_target_key_may_do_only_what_its_role_permits(migrated, hsm_evidence):
    """Key usage: the target key (and its public half) may do what the key's role permits and
    nothing else (keyparity.roles: a key-encrypting key wraps, never encrypts data; a data key
    never wraps; a MAC key MACs only)."""
    spec, target = migrated.spec, migrated.target
    found = [attributes.read_standard(target.key)]
    if target.public is not None:
        found.append(attributes.read(target.public, attributes.PUBLIC_USAGE))
    record = roles.check(spec.role, *found) | {"cluster": target.cluster}
    hsm_evidence(role_check=record)
    if not record["checked"]:
        pytest.skip(f"role unspecified: keys[{spec.index}].role names none, so the key usage "
                    "of the target key is not checked (a production profile requires a role)")
    assert not record["violations"], (
        f"the {spec.role} key on {target.cluster} may do more than its role permits: "
        + "; ".join(record["violations"]))
