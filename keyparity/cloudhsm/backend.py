"""``migration.backend: cloudhsm-cli``: keys move with the CloudHSM guide's own CLI commands
instead of PKCS #11 wrap calls; the suites then verify every key through PKCS #11 as usual.

1. target: ``key generate-asymmetric-pair rsa`` (public ``wrap=true``, private ``unwrap=true``)
2. target: ``key generate-file --encoding pem`` of the public half
3. source: ``key import pem --key-type-class rsa-public --attributes wrap=true``
4. per key, source: ``key wrap rsa-aes`` into a blob file; target: ``key unwrap rsa-aes`` with
   the source key's attributes (or the inventory's) under the target label, then
   ``key set-attribute`` of what CloudHSM takes only at its default at unwrap (``modifiable``)
5. ``key delete`` of the three wrapping objects.

The PEM and blob files live in a private (0700) temporary directory; each blob is removed as
soon as its key is unwrapped, the directory when the channel closes. The wrapping objects are
token objects here (single-command mode has no lasting session), so ``close`` deletes them and
reports what it could not delete.

Journal. With the run's recorder (``keyparity.journal.recorder``), every CLI write is recorded before
it is attempted and after it completes (or ``failed``): ``cli-generate-wrapping-pair``,
``cli-share-wrapping`` (per-owner strategy), ``cli-import-public``, ``cli-unwrap``, each
``cli-set-attribute`` after it and each ``cli-delete``. ``cluster`` is the CloudHSM cluster id the command ran against
(``--cluster-id``; without one, the role and name: ``CloudHsmCli.journal_cluster``), ``label``
the object's label (the pair's base label for the pair), ``handle`` the ``key-reference`` from the CLI's JSON; the ``before``
of a create says which process made it (``pid N on HOST``). A run killed before ``close`` leaves
token objects behind: ``reap_wrapping`` (at the start of the next run, and in ``keyparity
cleanup --run``) deletes through the CLI every wrapping object that the journal shows created
(or attempted) by an earlier run and not deleted since - by ``key delete --filter
attr.label=<label> attr.class=<class>``, and only when the label is exactly that run's keyparity
wrapping label (``keyparity-wrap-<run>-public|private|imported``), never an inventory label,
on a cluster id of the profile. At a run's start only runs whose process is gone (same host,
pid dead) are reaped: a concurrent run's live wrapping objects are left alone.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .. import process
from ..errors import KeyNotFound, KeyparityError, MechanismUnsupported, RuleRefused
from ..hsm import attributes, destruction
from ..hsm.backend import Once, wrapping_label
from ..hsm.cluster import ClusterSession
from ..hsm.locate import Side, locate_on_token
from ..hsm.login import LoginGate
from ..journal.recorder import RunRecorder
from ..keytypes import KEY_TYPES, key_class
from ..profile import KeySpec, Profile, Wrapping
from . import key_policy, users
from .cli_runner import CliKey, CliKeyNotFound, CloudHsmCli

# attributes given at unwrap, by their PKCS #11 name; CKA_PRIVATE and CKA_COPYABLE are not
# passed (CloudHSM keys are always private; the CLI documents no copyable attribute)
_NOT_PASSED = frozenset({"private", "copyable", "token"})
# journal actions of the CLI channel; the creates, and the objects each one makes
# (label suffix, CLI class)
CLI_CREATES = {"cli-generate-wrapping-pair": (("-public", "public-key"),
                                              ("-private", "private-key")),
               "cli-import-public": (("", "public-key"),)}
# key_policy's quorum check, for the backend that carries quorum values in its unwrap
_CARRIES_QUORUM = key_policy.Carrier("cloudhsm-cli", sets_quorum=True)
_OWNER = re.compile(r"pid (\d+) on (\S+?)(?:, started (\d+) in boot (\S+))?(?:$|[;,\s])")


def key_reference(data: Any, *path: str) -> str | None:
    """``key-reference`` of a created key in the CLI's ``data`` (``data.key``,
    ``data.public_key``...); None when the JSON does not have it."""
    for name in path:
        data = data.get(name) if isinstance(data, dict) else None
    ref = data.get("key-reference") if isinstance(data, dict) else None
    return str(ref) if ref not in (None, "") else None


def _owner() -> str:
    """Who made a run's wrapping objects, as the journal says it (keyparity.process: with the
    start time, a zombie or a reused pid is not taken for it)."""
    me = process.me()
    started = f", started {me.start} in boot {me.boot}" if me.start is not None and me.boot else ""
    return f"cloudhsm-cli; pid {me.pid} on {me.host}{started}"


def cli_class(spec: KeySpec) -> str:
    return "private-key" if spec.is_asymmetric else "secret-key"


def _wanted(source: Mapping[str, Any], spec: KeySpec) -> dict[str, Any]:
    """The target key's attributes keyparity asks for, by PKCS #11 name: the source key's
    settable ones, then the inventory's."""
    values: dict[str, Any] = {}
    for attr in attributes.SET_AT_UNWRAP[key_class(spec.type)]:
        name = attributes.name(attr)
        value = source.get(name, attributes.ABSENT)
        if name in _NOT_PASSED or value in (attributes.ABSENT, attributes.UNAVAILABLE):
            continue
        values[name] = value
    values.update({k: v for k, v in spec.attributes.items() if k not in _NOT_PASSED})
    return values


def _cli_name(name: str) -> str:
    return name.replace("_", "-")


def unwrap_attributes(source: Mapping[str, Any], spec: KeySpec) -> list[str]:
    """``name=value`` pairs for ``key unwrap --attributes``: the source key's settable
    attributes, then the inventory's; CloudHSM CLI names (``wrap-with-trusted``). What CloudHSM
    lets a new key have only at its default (``modifiable``: keyparity.hsm.attributes.
    CLOUDHSM_DEFAULT_ONLY) is left at it here and set after (``set_after``)."""
    out = []
    for name, value in _wanted(source, spec).items():
        if name == "id":
            if value:
                out.append(f"id=0x{value}")
            continue
        if name in set_after(source, spec):
            continue
        out.append(f"{_cli_name(name)}={'true' if value else 'false'}")
    return out


def set_after(source: Mapping[str, Any], spec: KeySpec) -> dict[str, bool]:
    """What ``key set-attribute`` sets on the unwrapped key, by PKCS #11 name: an attribute
    CloudHSM takes only at its default when a key is made, and changes afterwards
    (``modifiable`` true -> false: pkcs11-attributes-interpreting note 1,
    cloudhsm_cli-key-attributes-table; the rule is keyparity.hsm.attributes', shared with the
    PKCS #11 backend)."""
    out = {}
    for name, value in _wanted(source, spec).items():
        attr = attributes.BY_NAME[name]
        if (attr in attributes.CLOUDHSM_AFTER
                and value != attributes.CLOUDHSM_DEFAULT_ONLY[attr]):
            out[name] = bool(value)
    return out


class CliChannel:
    """Moves keys from ``source`` to ``target`` with the CloudHSM CLI's RSA-AES wrap/unwrap."""

    def __init__(self, source: CloudHsmCli, target: CloudHsmCli, wrapping: Wrapping,
                 label: str, recorder: RunRecorder,
                 owners: Mapping[str, tuple[CloudHsmCli, CloudHsmCli]] | None = None) -> None:
        self.source, self.target, self.wrapping = source, target, wrapping
        # the per-owner strategy: owner -> its (source, target) CLIs. One wrapping pair for
        # all: its public half is usable by every crypto user (a public key), its private
        # half is shared with each owner's target user, who may then use it to unwrap
        # (cloudhsm_cli-key-share); only the owner of a key may wrap it, so each key is
        # wrapped and unwrapped by its owner's CLIs
        self.owners = dict(owners or {})
        self.recorder = recorder  # every CLI write recorded before and after
        self.label = label
        self.public_label, self.private_label = f"{label}-public", f"{label}-private"
        self.imported_label = f"{label}-imported"
        self.method = (f"CloudHSM CLI key wrap/unwrap rsa-aes ({wrapping.oaep_hash}, "
                       f"{wrapping.mgf})")
        self.dir = Path(tempfile.mkdtemp(prefix="keyparity-cli-"))  # mode 0700
        # (cli, filters, key-reference) of each wrapping object, in creation order
        self.live: list[tuple[CloudHsmCli, dict[str, str], str | None]] = []
        self._n = 0
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        t, s, w = self.target, self.source, self.wrapping
        with self.recorder.step("cli-generate-wrapping-pair", cluster=t.journal_cluster,
                                label=self.label, detail=_owner()) as after:
            data = t.run("key", "generate-asymmetric-pair", "rsa", "--public-exponent", "65537",
                         "--modulus-size-bits", str(w.rsa_bits), "--public-label",
                         self.public_label, "--private-label", self.private_label,
                         "--public-attributes", "wrap=true", "--private-attributes",
                         "unwrap=true")
            pub, priv = key_reference(data, "public_key"), key_reference(data, "private_key")
            self.live += [(t, {"label": self.public_label, "class": "public-key"}, pub),
                          (t, {"label": self.private_label, "class": "private-key"}, priv)]
            after.update(handle=f"{pub or ''},{priv or ''}")
        for user in sorted({o[1].user for o in self.owners.values()} - {t.user}):
            with self.recorder.step("cli-share-wrapping", cluster=t.journal_cluster,
                                    label=self.private_label, detail=f"shared with {user}"):
                t.share({"label": self.private_label, "class": "private-key"}, user)
        pem = self.dir / "wrapping-public.pem"
        try:
            t.run("key", "generate-file", "--encoding", "pem", "--path", str(pem), "--filter",
                  f"attr.label={self.public_label}", "attr.class=public-key")
            with self.recorder.step("cli-import-public", cluster=s.journal_cluster,
                                    label=self.imported_label, detail=_owner()) as after:
                data = s.run("key", "import", "pem", "--path", str(pem), "--label",
                             self.imported_label, "--key-type-class", "rsa-public",
                             "--attributes", "wrap=true")
                ref = key_reference(data, "key")
                self.live.append((s, {"label": self.imported_label, "class": "public-key"},
                                  ref))
                after.update(handle=ref)
        finally:
            pem.unlink(missing_ok=True)

    def move(self, spec: KeySpec, source_attributes: Mapping[str, Any],
             target: ClusterSession) -> Side:
        """Wrap ``spec`` on the source, unwrap it on the target; return it as PKCS #11 sees it."""
        if KEY_TYPES[spec.type].cli_class is None:
            raise MechanismUnsupported(
                f"{spec.label!r}: the CloudHSM CLI has no key type for {spec.type} (CloudHSM "
                "does not hold 2-key 3DES); migrate it with migration.backend: pkcs11 or rotate it")
        source, target_cli = self.owners.get(spec.owner or "", (self.source, self.target))
        quorum, share = self._carried(spec, source)
        self._n += 1
        blob = self.dir / f"key-{self._n}.bin"
        w = self.wrapping
        try:
            source.run(
                "key", "wrap", "rsa-aes", "--payload-filter", f"attr.label={spec.label}",
                f"attr.class={cli_class(spec)}", "--wrapping-filter",
                f"attr.label={self.imported_label}", "attr.class=public-key",
                "--hash-function", w.oaep_hash, "--mgf", w.mgf, "--path", str(blob))
            extra = unwrap_attributes(source_attributes, spec)
            with self.recorder.step("cli-unwrap", key_label=spec.label,
                                    cluster=target_cli.journal_cluster, label=spec.target_label,
                                    detail=f"{_owner()}; as {target_cli.user}") as after:
                data = target_cli.run(
                    "key", "unwrap", "rsa-aes", "--filter", f"attr.label={self.private_label}",
                    "attr.class=private-key", "--key-type-class", KEY_TYPES[spec.type].cli_class,
                    "--label", spec.target_label, "--hash-function", w.oaep_hash, "--mgf",
                    w.mgf, "--data-path", str(blob), *(["--attributes", *extra] if extra else []),
                    *quorum, *(["--share-crypto-users", *share] if share else []))
                ref = key_reference(data, "key")
                after.update(handle=ref)
            self._set_after(spec, source_attributes, target_cli, ref)
        finally:
            blob.unlink(missing_ok=True)
        return find_unwrapped(target, spec)

    def _set_after(self, spec: KeySpec, source_attributes: Mapping[str, Any],
                   cli: CloudHsmCli, ref: str | None) -> None:
        """The guide's step 8: ``key set-attribute`` on the unwrapped key, as its owner (who
        unwrapped it), for what CloudHSM does not take at unwrap; each journaled."""
        where = ([f"key-reference={ref}"] if ref else
                 [f"attr.label={spec.target_label}", f"attr.class={cli_class(spec)}"])
        for name, value in set_after(source_attributes, spec).items():
            text = "true" if value else "false"
            with self.recorder.step("cli-set-attribute", key_label=spec.label,
                                    cluster=cli.journal_cluster, label=spec.target_label,
                                    handle=ref, detail=f"{_cli_name(name)}={text}; as {cli.user} "
                                    "(CloudHSM sets it only at its default at unwrap)"):
                cli.run("key", "set-attribute", "--filter", *where, "--name", _cli_name(name),
                        "--value", text)

    def _carried(self, spec: KeySpec,
                 source: CloudHsmCli) -> tuple[list[str], tuple[str, ...]]:
        """What the unwrap must carry of the source key (read with ``key list --verbose``):
        its key quorum values, set only when a key is made (quorum-auth-chsm-cli-service-
        names), and the users it is shared with then, the inventory's ``share_with`` (a quorum
        may need them: it is at most the number of users the key is associated with). Refused
        here, before anything is written, when ``source`` (the key owner's login on the
        source, with per-owner migration) does not own the key or the quorum exceeds the
        associated users."""
        key = source.one_key({"label": spec.label, "class": cli_class(spec)}, spec.label)
        for check in (key_policy.check_owner(spec, key, source.user, source.where),
                      key_policy.check_quorum_preflight(spec, key, _CARRIES_QUORUM)):
            if not check.ok:
                raise RuleRefused(f"{check.message}; nothing was written")
        return quorum_arguments(key), tuple(spec.share_with)

    def close(self) -> list[str]:
        """Delete the wrapping objects and the temporary directory; returns what is left."""
        left = []
        for cli, filters, ref in reversed(self.live):
            try:
                with self.recorder.step("cli-delete", cluster=cli.journal_cluster,
                                        label=filters["label"], handle=ref,
                                        detail=f"class {filters['class']}"):
                    cli.delete(filters)
            except KeyparityError as exc:
                left.append(f"{cli.where}: {filters['label']} ({type(exc).__name__})")
        self.live.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        return left


def _owner_of(detail: str | None) -> process.Proc | None:
    """The process a journal entry's detail names (``_owner``), or None."""
    found = _OWNER.search(detail or "")
    if found is None:
        return None
    start = found.group(3)
    return process.Proc(int(found.group(1)), found.group(2), int(start) if start else None,
                        found.group(4))


def _dead(owner: process.Proc | None) -> bool | None:
    """Whether the process that made a run's wrapping objects is gone (ended, a zombie, its
    pid reused: keyparity.process): True/False on this host, None when it ran elsewhere (or
    the journal does not say)."""
    if owner is None:
        return None
    me = process.me()
    if (owner.pid, owner.host) == (me.pid, me.host) and owner.start in (None, me.start):
        return False  # this process: another channel of it may still be live
    found = process.state(owner)
    return None if found == "unknown" else found == "dead"


def reap_wrapping(recorder: RunRecorder, source: CloudHsmCli, target: CloudHsmCli,
                  run_id: str | None = None,
                  protect: frozenset[str] | set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Delete through the CLI the wrapping objects that earlier runs created (journal
    ``cli-generate-wrapping-pair`` / ``cli-import-public``, ``before`` or ``after``) and did not
    delete (no ``cli-delete`` ``after`` of that cluster id and label since), each recorded.

    ``run_id`` None (a run's start): every run other than ``recorder``'s whose process is gone
    (same host, pid dead); a run that may be alive is left alone and said so. ``run_id`` given
    (``keyparity cleanup --run``): that run only, unless its process is alive on this host.
    Only objects whose label is exactly that run's wrapping label, not in ``protect`` (the
    inventory's labels) and on the cluster id of ``source`` or ``target`` are deleted; anything
    else is refused and reported. A key not found counts as already gone.
    Returns (lines, left): what was done, and what could not be deleted."""
    rows = recorder.journal.actions("cli-")
    gone = {(e["cluster"] or "", e["label"]) for e in rows
            if e["action"] == "cli-delete" and e["phase"] == "after"}
    clis = {c.journal_cluster: c for c in (source, target)}
    # run -> {(cluster, label): (class, key reference, seq)}, in creation order
    pending: dict[str, dict[tuple[str, str], tuple[str, str | None, int]]] = {}
    owners: dict[str, process.Proc] = {}
    for e in rows:
        run = e["run_id"]
        if e["action"] not in CLI_CREATES or (run_id is not None and run != run_id) or (
                run_id is None and run == recorder.run_id):
            continue
        owner = _owner_of(e["detail"]) if e["phase"] == "before" else None
        if owner is not None:
            owners.setdefault(run, owner)
        refs = (e["handle"] or "").split(",")
        for i, (suffix, cls) in enumerate(CLI_CREATES[e["action"]]):
            key = (e["cluster"] or "", f"{e['label'] or ''}{suffix}")
            ref = refs[i] if i < len(refs) and refs[i] else None
            old = pending.setdefault(run, {}).get(key)
            pending[run][key] = (cls, ref or (old[1] if old else None), old[2] if old else e["seq"])
    lines: list[str] = []
    left: list[str] = []
    for run, objects in pending.items():
        todo = [(k, v) for k, v in objects.items() if k not in gone]
        if not todo:
            continue
        dead = _dead(owners.get(run))
        if dead is False or (dead is None and run_id is None):
            why = ("its process is still running on this host" if dead is False else
                   "it ran on another host (or its journal entries do not say where), so it "
                   f"may still be running; remove them with `keyparity cleanup --run {run}`")
            lines.append(f"left alone: {len(todo)} wrapping object(s) of run {run}: {why}")
            continue
        allowed = {f"{wrapping_label(run)}{end}" for end in ("-public", "-private", "-imported")}
        for (cluster, label), (cls, ref, seq) in reversed(todo):
            name = f"{label!r} ({cls}) on cluster {cluster or '?'}"
            try:  # keyparity.hsm.destruction: only the run's own wrapping objects
                destruction.own_label(label, allowed, protect)
            except destruction.Refused:
                lines.append(f"refused: {name}: not run {run}'s keyparity wrapping label "
                             f"(journal seq {seq}); nothing deleted")
                left.append(f"{cluster}: {label} (refused)")
                continue
            cli = clis.get(cluster)
            if cli is None:
                lines.append(f"not removed: {name}: that cluster id is neither the source nor "
                             f"the target of this profile (journal seq {seq})")
                left.append(f"{cluster}: {label} (unknown cluster id)")
                continue
            try:
                with recorder.step("cli-delete", cluster=cluster, label=label, handle=ref,
                                   detail=f"class {cls}; wrapping object of run {run} (journal "
                                          f"seq {seq}) left behind") as after:
                    try:
                        cli.delete({"label": label, "class": cls})
                    except CliKeyNotFound:
                        after["detail"] = f"{after['detail']}; already gone (no such key)"
                        lines.append(f"already gone: {name} (run {run})")
                        continue
            except KeyparityError as exc:
                lines.append(f"not removed: {name} (run {run}): {exc}")
                left.append(f"{cli.where}: {label} ({type(exc).__name__})")
                continue
            lines.append(f"removed: {name}, wrapping object of run {run} (journal seq {seq})")
    return lines, left


def unwrap_record(profile: Profile, spec: KeySpec,
                  source_attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What the CLI will do on the target for ``spec`` (the signed plan shows it, the run
    compares it before each write): ``key unwrap`` as ``cloudhsm_cli_unwrap_as`` with
    ``--attributes`` ``cloudhsm_cli_attributes`` and ``--share-crypto-users``
    ``cloudhsm_cli_share_crypto_users``, then ``key set-attribute`` of
    ``cloudhsm_cli_set_after``. The key quorum values it carries are read from the source
    (``plan_reads``)."""
    login = profile.cli_spec("target", profile.owner_of(spec))
    return {"cloudhsm_cli_unwrap_as": login.user if login else None,
            "cloudhsm_cli_attributes": unwrap_attributes(source_attributes, spec),
            "cloudhsm_cli_share_crypto_users": list(spec.share_with),
            "cloudhsm_cli_set_after": set_after(source_attributes, spec)}


def quorum_arguments(key: CliKey) -> list[str]:
    """``--manage-key-quorum-value M --use-key-quorum-value U`` for ``key unwrap``: the source
    key's non-zero key quorum values (quorum-auth-chsm-cli-service-names: set only when a key
    is made, so the unwrap must carry them)."""
    values = key_policy.quorum_values(key) or {}
    return [a for name, v in values.items() if v for a in (f"--{name}", str(v))]


def plan_reads(profile: Profile, gate: LoginGate) -> dict[str, dict[str, Any] | str]:
    """label -> the source key's key quorum values and the ``key unwrap`` arguments they make
    (``cloudhsm_cli_quorum``), read with ``key list --verbose`` as the user the key will be
    wrapped as (its owner's, with per-owner migration); or why they could not be read. Keys
    marked rotate are not moved and not read."""
    moved = [k for k in profile.keys if k.disposition != "rotate"]
    out: dict[str, dict[str, Any] | str] = {}
    assert profile.source is not None
    for owner in sorted({profile.owner_of(k) or "" for k in moved}):
        mine = [k for k in moved if (profile.owner_of(k) or "") == owner]
        try:
            cli = CloudHsmCli.for_cluster(profile.source, gate=gate,
                                          spec=profile.cli_spec("source", owner or None))
        except KeyparityError as exc:
            out.update({k.label: str(exc) for k in mine})
            continue
        for label, key in users.source_keys(cli, mine).items():
            if isinstance(key, KeyparityError):
                out[label] = str(key)
            else:
                out[label] = {"cloudhsm_cli_quorum": {
                    "values": key_policy.quorum_values(key),
                    "unwrap_arguments": quorum_arguments(key)}}
    return out


def find_unwrapped(cluster: ClusterSession, spec: KeySpec) -> Side:
    """The key the CLI just unwrapped, found through PKCS #11 (the object index was built
    before it existed, so the token is asked again)."""
    side = locate_on_token(cluster, spec, "find the unwrapped key")
    if side is None:
        raise KeyNotFound(f"{spec.target_label!r} was unwrapped by the CloudHSM CLI but is not "
                          f"visible through PKCS #11 on {cluster.name}: check that the CLI and "
                          "PKCS #11 use the same crypto user and cluster")
    return side


class CliBackend:
    """``migration.backend: cloudhsm-cli`` as a keyparity.hsm.backend.Backend: each key moves
    with the guide's CLI commands (a CliChannel, made on the first move); ``start`` deletes
    the wrapping objects that earlier, dead runs left behind (``reap_wrapping``)."""

    batches = False  # each key's CLI unwrap is journaled on its own

    def __init__(self, profile: Profile, target: ClusterSession | None, recorder: RunRecorder,
                 run_id: str,
                 gate: LoginGate | None = None) -> None:
        self.profile, self.target, self.run_id = profile, target, run_id
        self.recorder = recorder
        self.gate = gate  # the run's: a refused CLI login is never tried again
        self.method = ""
        self.asked_target = False
        self._channel = Once(lambda: CliChannel(*self._clis(), profile.wrapping,
                                                wrapping_label(run_id), recorder,
                                                self._owner_clis()))
        self._left: list[str] = []  # wrapping objects of earlier runs that could not go

    def _clis(self) -> tuple[CloudHsmCli, CloudHsmCli]:
        return (CloudHsmCli.for_cluster(self.profile.source, gate=self.gate),
                CloudHsmCli.for_cluster(self.profile.target, gate=self.gate))

    def _owner_clis(self) -> dict[str, tuple[CloudHsmCli, CloudHsmCli]]:
        """Each owner's (source, target) CLIs (the per-owner strategy; {} without owners)."""
        p = self.profile
        return {o.name: (CloudHsmCli.for_cluster(p.source, gate=self.gate, spec=o.source),
                         CloudHsmCli.for_cluster(p.target, gate=self.gate, spec=o.target))
                for o in p.owners}

    def start(self) -> list[str]:
        try:
            self._clis()
        except KeyparityError as exc:  # the channel reports the same error for each key
            return [f"wrapping objects of earlier runs not checked: {exc}"]
        lines, self._left = self.reap(None)
        return lines

    def reap(self, run_id: str | None) -> tuple[list[str], list[str]]:
        if run_id is not None and not self.recorder.journal.has_entries(run_id, "cli-"):
            return [], []
        keys = self.profile.keys
        return reap_wrapping(self.recorder, *self._clis(), run_id=run_id,
                             protect={k.label for k in keys} | {k.target_label for k in keys})

    @property
    def channel(self) -> CliChannel:
        """The CLI channel, made on first use (a refusal: every key fails with it)."""
        return self._channel.get()

    def move(self, spec: KeySpec, source: Side, source_attributes: Mapping[str, Any]) -> Side:
        self.asked_target = False
        channel = self.channel
        self.asked_target = True  # its commands write to the target
        assert self.target is not None, "a backend made to reap moves no key"
        side = channel.move(spec, source_attributes, self.target)
        self.method = channel.method
        return side

    def recover(self) -> None:
        return None  # the CLI holds no PKCS #11 session

    def close(self) -> list[str]:
        left = list(self._left)
        if self._channel.made is not None:
            left += self._channel.made.close()
        return left
