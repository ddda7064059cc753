"""What is signed: statements, envelopes, signers, verification, plans and approvals."""
