"""Attribute parity: every standard attribute of the target key equals the source's, but for
the differences C_UnwrapKey is expected to make (each with its reason) and those the
inventory intends; and key usage: the target key may do what its role permits, nothing else."""
from keyparity import roles
from keyparity.hsm import attributes


def test_target_attributes_match_source(migrated, hsm_evidence):
    """Also the key's usage against its role (keyparity.roles: a key-encrypting key wraps,
    never encrypts data; a data key never wraps; a MAC key MACs only), read on the target key
    and its public half: a key without a role (a test profile) is recorded as not checked."""
    spec, target_side = migrated.spec, migrated.target
    source = attributes.standard(migrated.source.key)
    target = attributes.standard(target_side.key)
    diffs = attributes.compare(source, target, target_label=spec.target_label,
                               overrides=spec.attributes, intended=spec.expected_differences)
    usage = [target] + ([attributes.read(target_side.public, attributes.PUBLIC_USAGE)]
                        if target_side.public is not None else [])
    role = roles.check(spec.role, *usage) | {"cluster": target_side.cluster}
    hsm_evidence(attributes={"source": source, "target": target,
                             "differences": [d.__dict__ for d in diffs]}, role_check=role)
    problems = []
    if any(not d.expected for d in diffs):
        problems.append("attributes differ:\n" + attributes.table(diffs))
    if role["violations"]:
        problems.append(f"the {spec.role} key on {target_side.cluster} may do more than its "
                        "role permits: " + "; ".join(role["violations"]))
    assert not problems, "\n".join(problems)
