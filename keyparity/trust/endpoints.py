"""The endpoints a TLS handshake test goes to, one per parameter of
``test_mutual_tls_handshake``: the profile's ``tls.endpoints`` (``host[:port]``), ``simulated``
for a server keyparity runs itself, or one endpoint that stands for none, with the reason.

Fixed by the profile alone: node ids must be equal in every xdist worker, and the verdict
(keyparity.evidence.verdict) expects one handshake per endpoint without collecting the suite.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..profile import Profile


@dataclass(frozen=True, repr=False)
class Endpoint:
    """One endpoint to shake hands with: ``host:port`` from the profile, the simulated server
    (its address is known only when it runs), or none, with the reason (``reason``)."""

    id: str
    host: str | None = None
    port: int | None = None
    simulated: bool = False
    reason: str | None = None

    def __repr__(self) -> str:  # how Allure shows the parameter
        return self.id


def parse(text: str, port: int) -> Endpoint:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    host, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and (":" not in host or host.startswith("[")):
        port = int(tail)
    else:
        host = text
    host = host.removeprefix("[").removesuffix("]")
    return Endpoint(f"[{host}]:{port}" if ":" in host else f"{host}:{port}", host, port)


def no_tls_block(profile: Profile, role: str) -> str:
    cluster = getattr(profile, role)
    return f"clusters.{role} ({cluster.name}) has no `tls` block: its TLS trust is not checked"


def endpoints(profile: Profile | None, role: str) -> list[Endpoint]:
    """The handshake parameters of one cluster (the simulated server's free port is not part
    of its id)."""
    if profile is None:
        return [Endpoint("no-profile", reason="no --hsm-profile")]
    spec = getattr(profile, role).tls
    if spec is None:
        return [Endpoint("no-tls", reason=no_tls_block(profile, role))]
    out = [parse(text, spec.port) for text in spec.endpoints]
    if spec.simulated_server:
        out.append(Endpoint("simulated", simulated=True))
    return out or [Endpoint("no-endpoint", reason=f"clusters.{role}.tls lists no endpoints and "
                            "simulated_server is not true: no handshake is tried")]
