"""Every key type and curve keyparity migrates, as data (the one table; python-pkcs11's
``defaults.py`` is the model): the inventory's name, the PKCS #11 key type, how a message
shows it, the sizes a profile may give, the key check value's method, the CloudHSM CLI's key
class, and the CycloneDX algorithm (primitive, parameter set, security strengths, OID); per
curve its names, size, strength and what an evidence signer on it uses. The profile, the
token reads, the KCV, the CBOM and evidence signing read it; adding a key type is one entry.
Security strengths are NIST SP 800-57 Part 1's (Table 2); quantum categories NIST PQC's.
"""
from __future__ import annotations

from dataclasses import dataclass

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass


@dataclass(frozen=True)
class KcvMethod:
    """How a secret key's check value is computed by its token: ``mechanism`` over a zero block
    of ``block`` bytes, the first 3 bytes shown."""

    mechanism: Mechanism
    block: int
    description: str
    algorithm: str = ""  # the label beside the value (a payment HSM's name for the method)


@dataclass(frozen=True)
class Sizes:
    """The sizes in bits a profile may give: one of ``choices``, or from ``low`` to ``high`` in
    steps of ``step``; none at all (``Sizes()``): the type fixes its size or curve."""

    choices: tuple[int, ...] = ()
    low: int = 0
    high: int = 0
    step: int = 1

    @property
    def given(self) -> bool:
        return bool(self.choices or self.high)

    def problem(self, size: int) -> str | None:
        if self.choices and size not in self.choices:
            return f"{size} is not one of: {', '.join(map(str, self.choices))}"
        if self.high and not (self.low <= size <= self.high and size % self.step == 0):
            if self.step > 1:
                return f"{size} must be a multiple of {self.step} between {self.low} and " \
                       f"{self.high}"
            return f"{size} must be between {self.low} and {self.high}"
        return None


@dataclass(frozen=True)
class KeyTypeInfo:
    """One key type. ``stored_bits``: the size of a key whose type fixes it, as the token
    stores it (3DES: parity bits included); ``cbom_*``: its CycloneDX algorithm component
    (``cbom_strength`` fixed, else by size or curve: ``classical_strength``)."""

    name: str
    pkcs11: KeyType
    shown: str
    sizes: Sizes = Sizes()
    size_in_name: bool = False   # AES-128, RSA-2048 (else: generic secret of 256 bits)
    asymmetric: bool = False
    shape: tuple[Attribute, ...] = ()  # where a token keeps its size or curve (a second read)
    stored_bits: int | None = None
    fips_approved: bool = True     # False: FIPS mode no longer allows it (SP 800-131A Rev. 2)
    kcv: KcvMethod | None = None
    cmac_kcv: bool = False  # also a CMAC check value (ANSI X9.24-1:2017; keyparity.hsm.identity)
    proof_methods: tuple[str, ...] = ()  # keyparity.hsm.proof's, in the order tried
    cli_class: str | None = None   # CloudHSM CLI ``key unwrap --key-type-class``
    cli_names: tuple[str, ...] = ()  # how ``key list`` names the type
    cloudhsm_kcv: str | None = None  # why CloudHSM's check value is not ours (None: it is)
    cbom_name: str = ""
    cbom_primitive: str = "unknown"
    cbom_parameter_set: str | None = None
    cbom_strength: int | None = None
    cbom_quantum: int | None = 0
    oid: str | None = None

    @property
    def object_class(self) -> ObjectClass:
        """The class of the object that is moved: the secret key, or the private half."""
        return ObjectClass.PRIVATE_KEY if self.asymmetric else ObjectClass.SECRET_KEY


def _kcv(mechanism: Mechanism, block: int, how: str, algorithm: str) -> KcvMethod:
    return KcvMethod(mechanism, block, f"{how} of a{'n' if block == 8 else ''} {block}-byte "
                     "zero block, first 3 bytes", algorithm)


_DES_KCV = _kcv(Mechanism.DES3_ECB, 8, "DES3-ECB encryption", "ANSI_X9_24")
_DES_PROOF = ("des3-ecb-decrypt", "des3-ecb-encrypt", "des3-cmac")
# CloudHSM: "symmetric keys: first 3 bytes of the result of encrypting a zero-block with the
# key" - our KCV for DES3 and AES. Asymmetric: SHA-1 of the public key (encoding unstated);
# HMAC keys: no check value. Those are recorded, not compared.
_PAIR_KCV = ("CloudHSM's check value of a key pair is a SHA-1 of the public key in an encoding "
             "it does not state; the key is identified by {} instead")
KEY_TYPES: dict[str, KeyTypeInfo] = {t.name: t for t in (
    KeyTypeInfo("des2", KeyType.DES2, "3DES (two-key)", stored_bits=128, fips_approved=False,
                kcv=_DES_KCV, proof_methods=_DES_PROOF, cli_names=("des2",),
                cbom_name="3DES (two-key)", cbom_primitive="block-cipher",
                cbom_parameter_set="112", cbom_strength=80),
    KeyTypeInfo("des3", KeyType.DES3, "3DES (three-key)", stored_bits=192, fips_approved=False,
                kcv=_DES_KCV, proof_methods=_DES_PROOF, cli_class="des3",
                cli_names=("3des", "des3"), cbom_name="3DES", cbom_primitive="block-cipher",
                cbom_parameter_set="168", cbom_strength=112),
    KeyTypeInfo("aes", KeyType.AES, "AES", Sizes(choices=(128, 192, 256)), size_in_name=True,
                kcv=_kcv(Mechanism.AES_ECB, 16, "AES-ECB encryption",
                         "ECB (legacy; CloudHSM's check-value)"), cmac_kcv=True,
                proof_methods=("aes-ecb-decrypt", "aes-ecb-encrypt", "aes-cmac", "aes-key-wrap"),
                cli_class="aes", cli_names=("aes",),
                cbom_name="AES", cbom_primitive="block-cipher", cbom_quantum=None),
    KeyTypeInfo("generic-secret", KeyType.GENERIC_SECRET, "generic secret",
                Sizes(low=8, high=4096, step=8),
                kcv=_kcv(Mechanism.SHA256_HMAC, 16, "HMAC-SHA256", "HMAC-SHA256 (keyparity's)"),
                proof_methods=("hmac-sha256",),
                cli_class="generic-secret", cli_names=("generic-secret",),
                cloudhsm_kcv="CloudHSM computes no check value for HMAC (generic secret) keys; "
                             "keyparity's KCV is HMAC-SHA256",
                cbom_name="HMAC", cbom_primitive="mac", cbom_quantum=None),
    KeyTypeInfo("rsa", KeyType.RSA, "RSA", Sizes(low=1024, high=8192), size_in_name=True,
                asymmetric=True, shape=(Attribute.MODULUS,), cli_class="rsa-private",
                cli_names=("rsa",), cloudhsm_kcv=_PAIR_KCV.format("its public-key fingerprint"),
                cbom_name="RSA", cbom_primitive="pke", oid="1.2.840.113549.1.1.1"),
    KeyTypeInfo("ec", KeyType.EC, "EC", asymmetric=True, shape=(Attribute.EC_PARAMS,),
                cli_class="ec-private", cli_names=("ec",),
                cloudhsm_kcv=_PAIR_KCV.format("an ECDSA signature"),
                cbom_name="EC", cbom_primitive="signature", oid="1.2.840.10045.2.1"),
)}
BY_PKCS11: dict[KeyType, KeyTypeInfo] = {t.pkcs11: t for t in KEY_TYPES.values()}
ASYMMETRIC = tuple(name for name, t in KEY_TYPES.items() if t.asymmetric)
_AES_QUANTUM = {128: 1, 192: 3, 256: 5}  # NIST PQC categories
_RSA_STRENGTH = ((15360, 256), (7680, 192), (3072, 128), (2048, 112), (1024, 80))


@dataclass(frozen=True)
class Curve:
    """One named curve: ``hash``, ``kms_spec`` and ``kms_algorithm`` are what an evidence
    signer on it uses (ECDSA over that hash; AWS KMS's names)."""

    name: str       # secp384r1 (how profiles and PKCS #11 name it)
    nist: str       # P-384 (how messages and the CBOM name it)
    bits: int
    strength: int
    hash: str
    kms_spec: str
    kms_algorithm: str


CURVES: dict[str, Curve] = {c.name: c for c in (
    Curve("secp256r1", "P-256", 256, 128, "sha256", "ECC_NIST_P256", "ECDSA_SHA_256"),
    Curve("secp384r1", "P-384", 384, 192, "sha384", "ECC_NIST_P384", "ECDSA_SHA_384"),
    Curve("secp521r1", "P-521", 521, 256, "sha512", "ECC_NIST_P521", "ECDSA_SHA_512"),
)}
# every name a profile may give a curve -> the curve's name
CURVE_ALIASES: dict[str, str] = {alias: c.name for c in CURVES.values()
                                 for alias in (c.name, c.nist)}


def key_type(name: str) -> KeyTypeInfo:
    return KEY_TYPES[name]


def key_class(type_name: str) -> ObjectClass:
    """The class of the object that is moved: the secret key, or the private half."""
    return KEY_TYPES[type_name].object_class


def curve_of(name: str | None) -> Curve | None:
    """The curve a profile, a token or a CBOM names (secp384r1 or P-384); None: not one."""
    return CURVES.get(CURVE_ALIASES.get(name or "", ""))


def curve_name(curve: str | None) -> str | None:
    """P-256 for secp256r1 (how messages name curves); any other name as it is."""
    known = curve_of(curve)
    return known.nist if known else curve


def size_problem(type_name: str, size: int | None) -> str | None:
    """Why a profile may not give ``size`` (bits, None: not given) for a key of this type."""
    sizes = KEY_TYPES[type_name].sizes
    if not sizes.given:
        return None if size is None else f"not allowed for type {type_name}"
    if size is None:
        return f"required field missing for type {type_name}"
    problem = sizes.problem(size)
    return f"{problem} (type {type_name})" if problem else None


def classical_strength(type_name: str, size: int | None, curve: str | None) -> int | None:
    """The key's classical security strength in bits (SP 800-57 Part 1, Table 2)."""
    info = KEY_TYPES.get(type_name)
    if info is None or info.cbom_strength is not None:
        return info.cbom_strength if info else None
    if type_name == "aes":
        return size
    if type_name == "rsa":
        return next((s for bits, s in _RSA_STRENGTH if (size or 0) >= bits), None)
    known = curve_of(curve)
    return known.strength if known and type_name == "ec" else None


def quantum_category(type_name: str, size: int | None) -> int | None:
    """The NIST PQC security category the key meets (0: none; None: not said)."""
    info = KEY_TYPES.get(type_name)
    if info is None:
        return None
    return _AES_QUANTUM.get(size or 0) if type_name == "aes" else info.cbom_quantum
