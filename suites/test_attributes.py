"""Attribute parity: every standard attribute of the target key equals the source's, but for
the differences C_UnwrapKey is expected to make (each with its reason) and those the
inventory intends."""
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
