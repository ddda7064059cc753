"""One PKCS #11 call where python-pkcs11 makes two.

python-pkcs11 0.10.1 asks every output's length first: ``encrypt``, ``decrypt``, ``sign`` and
``wrap_key`` call the function once with a null buffer and again with one of the size given
(``OperationWithBinaryOutput.update_resizing_output``, ``wrap_key``), and ``get_attributes``
reads the lengths and then the values (``get_attribute_list``). On a network HSM each call is
a round trip. Here the same functions of the same module, taken from its function list
(ctypes: the module python-pkcs11 loaded, by the same path, so the same sessions and handles),
are called once, with a buffer large enough for any output the call can give
(PKCS #11 v2.40 §5.2: a buffer that is large enough gets the output in one call); only a
buffer found too small (CKR_BUFFER_TOO_SMALL) costs a second call.

A failed call is not mapped to an exception here: the operation is made again through
python-pkcs11, which raises its own (the same as before, one call later), so the error
handling of every caller stays python-pkcs11's. A session whose module is not registered
(``register``: keyparity.hsm.cluster does it when it opens a session) goes through
python-pkcs11 as before.
"""
from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import Any

from pkcs11 import Mechanism
from pkcs11.attributes import AttributeMapper
from pkcs11.defaults import DEFAULT_MECHANISM_PARAMS
from pkcs11.mechanisms import CTRParams, GCMParams

from ..errors import operation as permitted

CK_ULONG = ctypes.c_ulong
CKR_OK, CKR_BUFFER_TOO_SMALL = 0x0, 0x150
# CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID: every other attribute was read
_READ_ANSWERS = (0x0, 0x11, 0x12)
UNAVAILABLE = CK_ULONG(-1).value

# indices in CK_FUNCTION_LIST (PKCS #11 v2.40, after its CK_VERSION)
_INDEX = {"C_GetAttributeValue": 24, "C_FindObjectsInit": 26, "C_FindObjects": 27,
          "C_FindObjectsFinal": 28, "C_EncryptInit": 29, "C_Encrypt": 30,
          "C_DecryptInit": 33, "C_Decrypt": 34, "C_SignInit": 42, "C_Sign": 43,
          "C_WrapKey": 60}
_OPS = {"encrypt": ("C_EncryptInit", "C_Encrypt"), "decrypt": ("C_DecryptInit", "C_Decrypt"),
        "sign": ("C_SignInit", "C_Sign")}
# the largest output of one call: the input plus a block, a tag or padding; or a signature
# (RSA-8192: 1,024 bytes)
_ROOM = 1024
_ATTRIBUTE_ROOM = 512
_CKZ_DATA_SPECIFIED = 1  # the OAEP source, as python-pkcs11 always sets it
_PSS = {int(m) for m in Mechanism if m.name.endswith("RSA_PKCS_PSS")}
_LARGE_ATTRIBUTES = {0x11, 0x120, 0x121, 0x180, 0x181}  # VALUE, MODULUS, EXPONENT, EC_PARAMS/POINT


class _Attribute(ctypes.Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", CK_ULONG)]


class _Mechanism(ctypes.Structure):
    _fields_ = [("mechanism", CK_ULONG), ("pParameter", ctypes.c_void_p),
                ("ulParameterLen", CK_ULONG)]


class _Gcm(ctypes.Structure):
    _fields_ = [("pIv", ctypes.c_void_p), ("ulIvLen", CK_ULONG), ("ulIvBits", CK_ULONG),
                ("pAAD", ctypes.c_void_p), ("ulAADLen", CK_ULONG), ("ulTagBits", CK_ULONG)]


class _Ctr(ctypes.Structure):
    _fields_ = [("ulCounterBits", CK_ULONG), ("cb", ctypes.c_ubyte * 16)]


class _Oaep(ctypes.Structure):
    _fields_ = [("hashAlg", CK_ULONG), ("mgf", CK_ULONG), ("source", CK_ULONG),
                ("pSourceData", ctypes.c_void_p), ("ulSourceDataLen", CK_ULONG)]


class _Pss(ctypes.Structure):
    _fields_ = [("hashAlg", CK_ULONG), ("mgf", CK_ULONG), ("sLen", CK_ULONG)]


_VP, _P = ctypes.c_void_p, ctypes.c_char_p
_PROTOTYPES = {  # CK_RV f(...): the arguments of each function called here
    "C_GetAttributeValue": (CK_ULONG, CK_ULONG, _VP, CK_ULONG),
    "C_EncryptInit": (CK_ULONG, _VP, CK_ULONG), "C_DecryptInit": (CK_ULONG, _VP, CK_ULONG),
    "C_SignInit": (CK_ULONG, _VP, CK_ULONG),
    "C_Encrypt": (CK_ULONG, _P, CK_ULONG, _VP, _VP), "C_Decrypt": (CK_ULONG, _P, CK_ULONG, _VP, _VP),
    "C_Sign": (CK_ULONG, _P, CK_ULONG, _VP, _VP),
    "C_WrapKey": (CK_ULONG, _VP, CK_ULONG, CK_ULONG, _VP, _VP),
    "C_FindObjectsInit": (CK_ULONG, _VP, CK_ULONG),
    "C_FindObjects": (CK_ULONG, _VP, CK_ULONG, _VP), "C_FindObjectsFinal": (CK_ULONG,),
}


class Functions:
    """The functions of one loaded module called here, from its function list."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        table = ctypes.POINTER(ctypes.c_void_p)()
        if lib.C_GetFunctionList(ctypes.byref(table)) != CKR_OK:
            raise OSError(f"C_GetFunctionList of {path} failed")
        # the list starts with a CK_VERSION (two bytes, padded to a pointer)
        self.fn = {name: ctypes.CFUNCTYPE(CK_ULONG, *_PROTOTYPES[name])(table[1 + i])
                   for name, i in _INDEX.items()}


# python-pkcs11's default, the one every session keyparity opens has (its own is not public)
_MAPPER = AttributeMapper()
_MODULES: dict[str, Functions] = {}
_SESSIONS: dict[int, tuple[Any, Functions]] = {}


def register(session: Any, module: str) -> None:
    """Calls on ``session`` (python-pkcs11) go to ``module``'s functions directly from now on."""
    if module not in _MODULES:
        try:
            _MODULES[module] = Functions(module)
        except (OSError, AttributeError):
            return
    _SESSIONS[id(session)] = (session, _MODULES[module])


def forget(session: Any) -> None:
    _SESSIONS.pop(id(session), None)


def _functions(obj: Any) -> Functions | None:
    found = _SESSIONS.get(id(getattr(obj, "session", None)))
    return found[1] if found is not None and found[0] is obj.session else None


def _mechanism(mechanism: Any, param: Any) -> tuple[_Mechanism, list[Any]] | None:
    """The CK_MECHANISM python-pkcs11 would pack (``MechanismWithParam``), and the objects it
    points to (kept alive by the caller); None: a parameter this module does not pack."""
    keep: list[Any] = []
    if param is None:
        param = DEFAULT_MECHANISM_PARAMS.get(mechanism)  # OAEP, PSS: python-pkcs11's defaults
    if param is None:
        param_struct: Any = None
    elif isinstance(param, bytes):
        param_struct = ctypes.create_string_buffer(param, len(param))
    elif isinstance(param, GCMParams):
        aad = param.aad or b""
        keep += [param.nonce, aad]
        param_struct = _Gcm(ctypes.cast(ctypes.c_char_p(param.nonce), ctypes.c_void_p),
                            len(param.nonce), len(param.nonce) * 8,
                            ctypes.cast(ctypes.c_char_p(aad), ctypes.c_void_p) if aad else None,
                            len(aad), param.tag_bits)
    elif isinstance(param, CTRParams):
        block = param.nonce + b"\x00" * (15 - len(param.nonce)) + b"\x01"
        param_struct = _Ctr((16 - len(param.nonce)) * 8, (ctypes.c_ubyte * 16)(*block))
    elif mechanism == Mechanism.RSA_PKCS_OAEP and isinstance(param, tuple) and len(param) == 3:
        hash_alg, mgf, source = param
        keep.append(source)
        param_struct = _Oaep(hash_alg, mgf, _CKZ_DATA_SPECIFIED,
                             ctypes.cast(ctypes.c_char_p(source), ctypes.c_void_p)
                             if source else None, len(source or b""))
    elif isinstance(param, tuple) and len(param) == 3 and int(mechanism) in _PSS:
        param_struct = _Pss(*param)
    else:
        return None
    keep.append(param_struct)
    if param_struct is None:
        return _Mechanism(int(mechanism), None, 0), keep
    return _Mechanism(int(mechanism), ctypes.cast(ctypes.byref(param_struct), ctypes.c_void_p),
                      ctypes.sizeof(param_struct)), keep


def _output(call: Any, session: int, head: tuple[Any, ...], room: int) -> bytes | None:
    """``call(session, *head, out, &length)`` once with ``room`` bytes (twice when that is
    too small); None when it fails."""
    length = CK_ULONG(room)
    out = ctypes.create_string_buffer(room)
    rv = call(session, *head, out, ctypes.byref(length))
    if rv == CKR_BUFFER_TOO_SMALL:
        out = ctypes.create_string_buffer(length.value)
        rv = call(session, *head, out, ctypes.byref(length))
    return out.raw[:length.value] if rv == CKR_OK else None


def crypt(key: Any, op: str, data: bytes, mechanism: Any, param: Any = None) -> bytes | None:
    """``key.<op>(data, mechanism=, mechanism_param=)`` (encrypt, decrypt, sign) as one init
    and one call; None when it could not be made so (the caller asks python-pkcs11)."""
    functions = _functions(key)
    packed = _mechanism(mechanism, param) if functions is not None else None
    if functions is None or packed is None:
        return None
    mech, _keep = packed
    data = bytes(data)  # a bytearray or memoryview as python-pkcs11 takes it
    init, run = (functions.fn[name] for name in _OPS[op])
    session = key.session.handle
    if init(session, ctypes.addressof(mech), key.handle) != CKR_OK:
        return None
    return _output(run, session, (data, len(data)), len(data) + _ROOM)


def wrap(wrapping_key: Any, key: Any, mechanism: Any, param: Any, room: int) -> bytes | None:
    """``wrapping_key.wrap_key(key, mechanism=, mechanism_param=)`` as one call, with
    ``room`` bytes for the blob (the caller knows its size); None as ``crypt``."""
    functions = _functions(wrapping_key)
    packed = _mechanism(mechanism, param) if functions is not None else None
    if functions is None or packed is None:
        return None
    mech, _keep = packed
    return _output(functions.fn["C_WrapKey"], wrapping_key.session.handle,
                   (ctypes.addressof(mech), wrapping_key.handle, key.handle), room)


def attributes(obj: Any, types: list[Any]) -> dict[Any, Any] | None:
    """``obj.get_attributes(types)`` as one call: the attributes the token gives, each decoded
    by python-pkcs11's mapper, or the exception its decoding raised (a value python-pkcs11
    cannot decode: an empty CK_DATE); one the token does not have, or keeps secret, is left
    out, as python-pkcs11 leaves it out. None when it could not be made so: a value did not
    fit, or another failure (the caller asks python-pkcs11)."""
    functions = _functions(obj)
    if functions is None or not types:
        return None
    return _read(functions, obj.session.handle, obj.handle, types)


def _read(functions: Functions, session: int, handle: int,
          types: list[Any]) -> dict[Any, Any] | None:
    layout = _LAYOUTS.get(tuple(types))
    if layout is None:
        layout = _LAYOUTS[tuple(types)] = _Layout(types)
    data = ctypes.create_string_buffer(layout.size)
    base = ctypes.addressof(data)
    values = layout.values.copy()
    values[1::3] = [base + offset for offset in layout.offsets]
    template = ctypes.create_string_buffer(layout.template.pack(*values))
    rv = functions.fn["C_GetAttributeValue"](session, handle, template, len(types))
    if rv not in _READ_ANSWERS:
        return None
    lengths = layout.template.unpack_from(template)[2::3]
    raw = data.raw
    out: dict[Any, Any] = {}
    for attr, offset, length in zip(types, layout.offsets, lengths):
        if length != UNAVAILABLE:
            try:
                out[attr] = _MAPPER.unpack_attributes(attr, raw[offset:offset + length])
            except Exception as exc:  # noqa: BLE001 - the caller decides what it means
                out[attr] = exc
    return out


class _Layout:
    """Where each value of one read goes: a CK_ATTRIBUTE array packed in one go (type,
    pValue, ulValueLen: unsigned long, pointer, unsigned long) and one buffer for the values,
    each with its room; made once for each list of attributes a run reads."""

    def __init__(self, types: list[Any]) -> None:
        self.types = [int(t) for t in types]
        self.rooms = [8192 if t in _LARGE_ATTRIBUTES else _ATTRIBUTE_ROOM for t in self.types]
        self.offsets = [sum(self.rooms[:i]) for i in range(len(self.rooms))]
        self.size = sum(self.rooms)
        self.template = struct.Struct("@" + "LPL" * len(self.types))
        self.values = [v for t, room in zip(self.types, self.rooms) for v in (t, 0, room)]


_LAYOUTS: dict[tuple[Any, ...], _Layout] = {}


def attribute(obj: Any, attr: Any) -> Any:
    """``obj[attr]`` in one call where it can be, else through python-pkcs11 (which raises
    what it raises for it)."""
    got = (attributes(obj, [attr]) or {}).get(attr)
    return got if got is not None and not isinstance(got, Exception) else obj[attr]


def key_type(key: Any) -> Any:
    """``key.key_type`` (python-pkcs11 keeps it on the object once read: a cached property),
    read in one call where it can be."""
    if "key_type" not in vars(key):
        knows_key_type(key, attribute(key, 0x100))  # CKA_KEY_TYPE
    return key.key_type


def knows_key_type(key: Any, value: Any) -> None:
    """``key.key_type`` is ``value`` (read by the caller): kept where python-pkcs11's cached
    property keeps it, so that neither asks the token again."""
    vars(key).setdefault("key_type", value)


def find(session: Any, template: dict[Any, Any], types: list[Any]) -> list[dict[Any, Any]] | None:
    """The objects ``template`` matches (as ``session.get_objects(template)`` takes it), each
    with ``types`` read in one call: C_FindObjectsInit, C_FindObjects (100 handles at a time),
    C_FindObjectsFinal, and one C_GetAttributeValue per object; none of python-pkcs11's own
    reads of each object's class and capabilities (two more calls an object). None when it
    could not be made so."""
    found = _SESSIONS.get(id(session))
    if found is None or found[0] is not session:
        return None
    functions, handle = found[1], session.handle
    keep = [ctypes.create_string_buffer(v, len(v))
            for v in (_MAPPER.pack_attribute(t, value) for t, value in template.items())]
    tpl = (_Attribute * len(template))(*(
        _Attribute(int(t), ctypes.cast(b, ctypes.c_void_p), len(b))
        for t, b in zip(template, keep)))
    if functions.fn["C_FindObjectsInit"](handle, ctypes.addressof(tpl), len(template)) != CKR_OK:
        return None
    handles: list[int] = []
    batch, count = (CK_ULONG * 100)(), CK_ULONG(0)
    try:
        while True:
            if functions.fn["C_FindObjects"](handle, ctypes.addressof(batch), 100,
                                             ctypes.byref(count)) != CKR_OK:
                return None
            if not count.value:
                break
            handles.extend(batch[:count.value])
    finally:
        functions.fn["C_FindObjectsFinal"](handle)
    out = []
    for h in handles:
        got = _read(functions, handle, h, types)
        if got is None:
            return None
        out.append(got)
    return out


def fast(key: Any, op: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (python-pkcs11's ``key.<op>``) made as one init and one call where it can be
    (``crypt``), with python-pkcs11's signature for a single-part operation."""
    if op not in _OPS:
        return method

    def call(data: bytes, mechanism: Any = None, mechanism_param: Any = None) -> bytes:
        out = crypt(key, op, data, mechanism, mechanism_param) if mechanism is not None else None
        if out is not None:
            return out
        given = {} if mechanism_param is None else {"mechanism_param": mechanism_param}
        return method(data, mechanism=mechanism, **given)
    return call


def operation(key: Any, op: str, where: str, purpose: str) -> Callable[..., Any]:
    """``keyparity.errors.operation`` (``key.<op>``, or NotPermitted naming the attribute
    that forbids it), made as ``fast`` makes it."""
    return fast(key, op, permitted(key, op, where, purpose))
