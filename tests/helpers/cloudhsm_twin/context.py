"""What a command runs with: its arguments, the cluster (settings, state, token session, keys)
and who is logged in."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from pkcs11.types import Session

from .argv import Args
from .errors import UsageError
from .keystore import Key, select
from .rules import single
from .state import State


@dataclass(frozen=True)
class Cluster:
    """A stand-in cluster's settings, as provisioning wrote them into its state."""

    cluster_id: str
    name: str          # the SoftHSM token's label
    mode: str          # FIPS | NON_FIPS
    hsm_type: str      # hsm1.medium | hsm2m.medium
    pkcs11_user: str   # the crypto user the cluster's PKCS #11 login stands for
    module: str
    conf: str          # the root's softhsm2.conf
    pin_file: Path     # the token's user PIN (the PKCS #11 login, not a CloudHSM password)
    directory: Path

    @classmethod
    def of(cls, state: State) -> Cluster:
        get = state.get
        return cls(str(get("cluster_id")), str(get("name")), str(get("mode")),
                   str(get("hsm_type")), str(get("pkcs11_user")), str(get("module")),
                   str(state.directory.parent / str(get("conf"))),
                   state.directory.parent / str(get("pin_file")), state.directory)

    @property
    def root(self) -> Path:
        return self.directory.parent


@dataclass
class Ctx:
    args: Args
    state: State
    cluster: Cluster
    user: str = ""
    role: str = ""
    session: Session | None = None
    keys: list[Key] = field(default_factory=list)

    def one(self, option: str) -> Key:
        """The single key the filter of ``option`` selects for the logged-in user."""
        return single(select(self.keys, self.args.many(option), self.user, self.role))  # type: ignore[return-value]

    def roles(self) -> dict[str, str]:
        return {u.username: u.role for u in self.state.users()}

    def number(self, option: str, default: int = 0) -> int:
        text = self.args.one(option)
        if text is None:
            return default
        try:
            return int(text, 0)
        except ValueError:
            raise UsageError(f"invalid value '{text}' for '{option}': a number") from None


