/* CKM_RSA_AES_KEY_WRAP (PKCS #11 v2.40 Current Mechanisms, 2.1.21 and 2.1.22) for a target
 * that lacks it (SoftHSM 2.6), done inside the target in two steps:
 *   wrap:   a temporary AES key of ulAESKeyBits (a session object) is wrapped with
 *           CKM_RSA_PKCS_OAEP under the RSA wrapping key, the payload with CKM_AES_KEY_WRAP_PAD
 *           (RFC 5649) under the temporary key; output = OAEP part || KWP part;
 *   unwrap: the input is split after the RSA modulus length, the temporary key is unwrapped
 *           with CKM_RSA_PKCS_OAEP (a session object), the payload with CKM_AES_KEY_WRAP_PAD
 *           and the caller's template.
 * The temporary key is destroyed on every path. The caller's OAEP parameters go to the target
 * unchanged: what the target refuses (SoftHSM: any hash but SHA-1) is refused with its answer.
 * Calls made here go to the target directly: one call of the caller is one delay, one count.
 */
#include <string.h>

#include "p11forward.h"

/* CK_RSA_AES_KEY_WRAP_PARAMS as v2.40 2.1.22 lays it out (p11-kit 0.24's header has the
 * mechanism's number but not this struct). */
typedef struct {
    CK_ULONG ulAESKeyBits;
    CK_RSA_PKCS_OAEP_PARAMS_PTR pOAEPParams;
} rsa_aes_params;

/* what the target must have for the two steps */
static const CK_MECHANISM_TYPE parts[] = {CKM_RSA_PKCS_OAEP, CKM_AES_KEY_WRAP_PAD,
                                          CKM_AES_KEY_GEN};
#define N_PARTS (sizeof parts / sizeof parts[0])

static int known_hash(CK_MECHANISM_TYPE hash)
{
    return hash == CKM_SHA_1 || hash == CKM_SHA224 || hash == CKM_SHA256 ||
           hash == CKM_SHA384 || hash == CKM_SHA512;
}

/* v2.40 2.1.8, table "PKCS #1 Mask Generation Functions" */
static int known_mgf(CK_RSA_PKCS_MGF_TYPE mgf)
{
    return mgf == CKG_MGF1_SHA1 || mgf == CKG_MGF1_SHA224 || mgf == CKG_MGF1_SHA256 ||
           mgf == CKG_MGF1_SHA384 || mgf == CKG_MGF1_SHA512;
}

/* The parameter, copied out of the caller's memory, if v2.40 allows it: ulAESKeyBits "can be
 * only 128, 192 or 256" (2.1.22); a known hash and MGF; source CKZ_DATA_SPECIFIED, the only
 * source defined, whose data "must be NULL and ulSourceDataLen must be zero" when empty
 * (2.1.8). The hash and the MGF may differ: the spec sets each on its own. */
static int valid(const CK_MECHANISM *mechanism, CK_ULONG *aes_bits,
                 CK_RSA_PKCS_OAEP_PARAMS *oaep)
{
    rsa_aes_params params;
    if (mechanism->pParameter == NULL || mechanism->ulParameterLen != sizeof params)
        return 0;
    memcpy(&params, mechanism->pParameter, sizeof params);
    if (params.ulAESKeyBits != 128 && params.ulAESKeyBits != 192 && params.ulAESKeyBits != 256)
        return 0;
    if (params.pOAEPParams == NULL)
        return 0;
    memcpy(oaep, params.pOAEPParams, sizeof *oaep);
    *aes_bits = params.ulAESKeyBits;
    return known_hash(oaep->hashAlg) && known_mgf(oaep->mgf) &&
           oaep->source == CKZ_DATA_SPECIFIED &&
           (oaep->pSourceData == NULL) == (oaep->ulSourceDataLen == 0);
}

static int target_has_parts(CK_SLOT_ID slot, CK_MECHANISM_INFO *oaep_info)
{
    CK_MECHANISM_INFO info;
    for (size_t i = 0; i < N_PARTS; i++) {
        if (target->C_GetMechanismInfo(slot, parts[i], i == 0 ? oaep_info : &info) != CKR_OK)
            return 0;
    }
    return 1;
}

/* The target's list, and CKM_RSA_AES_KEY_WRAP after it where the target has the parts and
 * not the mechanism itself. */
CK_RV rsa_aes_mechanism_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE *list, CK_ULONG *count)
{
    CK_MECHANISM_INFO info;
    CK_ULONG n = 0;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    CK_RV rv = target->C_GetMechanismList(slot, NULL, &n);
    if (rv != CKR_OK)
        return rv;
    int add = target->C_GetMechanismInfo(slot, CKM_RSA_AES_KEY_WRAP, &info) != CKR_OK &&
              target_has_parts(slot, &info);
    if (list == NULL) {
        *count = n + add;
        return CKR_OK;
    }
    if (*count < n + add) {
        *count = n + add;
        return CKR_BUFFER_TOO_SMALL;
    }
    CK_ULONG room = *count - add; /* the target's list may have grown since */
    rv = target->C_GetMechanismList(slot, list, &room);
    if (rv == CKR_OK && add)
        list[room++] = CKM_RSA_AES_KEY_WRAP;
    if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
        *count = room + (rv == CKR_OK ? 0 : add);
    return rv;
}

/* Key sizes are those of the RSA key (2.1.21: "the supported range of RSA modulus sizes"),
 * as the target gives them for CKM_RSA_PKCS_OAEP. */
CK_RV rsa_aes_mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO *info)
{
    CK_MECHANISM_INFO oaep;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    if (!target_has_parts(slot, &oaep))
        return target->C_GetMechanismInfo(slot, type, info);
    info->ulMinKeySize = oaep.ulMinKeySize;
    info->ulMaxKeySize = oaep.ulMaxKeySize;
    info->flags = CKF_WRAP | CKF_UNWRAP;
    return CKR_OK;
}

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* The temporary AES key, generated for a wrap: extractable (OAEP wraps it), a wrapping key and
 * nothing else, a session object. */
static CK_RV generate_temporary(CK_SESSION_HANDLE session, CK_ULONG bits, CK_OBJECT_HANDLE *key)
{
    CK_ULONG bytes = bits / 8;
    CK_MECHANISM generate = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE template[] = {
        {CKA_VALUE_LEN, &bytes, sizeof bytes}, {CKA_TOKEN, &no, sizeof no},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_WRAP, &yes, sizeof yes}, {CKA_UNWRAP, &no, sizeof no},
        {CKA_ENCRYPT, &no, sizeof no}, {CKA_DECRYPT, &no, sizeof no},
        {CKA_SIGN, &no, sizeof no}, {CKA_VERIFY, &no, sizeof no}, {CKA_DERIVE, &no, sizeof no},
    };
    return target->C_GenerateKey(session, &generate, template,
                                 sizeof template / sizeof template[0], key);
}

/* The temporary AES key of an unwrap: an unwrapping key and nothing else, a session object,
 * never extractable. */
static CK_RV unwrap_temporary(CK_SESSION_HANDLE session, CK_MECHANISM *oaep,
                              CK_OBJECT_HANDLE rsa_key, CK_BYTE *head, CK_ULONG head_len,
                              CK_OBJECT_HANDLE *key)
{
    CK_OBJECT_CLASS class = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ATTRIBUTE template[] = {
        {CKA_CLASS, &class, sizeof class}, {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &no, sizeof no}, {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no}, {CKA_UNWRAP, &yes, sizeof yes},
        {CKA_WRAP, &no, sizeof no}, {CKA_ENCRYPT, &no, sizeof no},
        {CKA_DECRYPT, &no, sizeof no}, {CKA_SIGN, &no, sizeof no},
        {CKA_VERIFY, &no, sizeof no}, {CKA_DERIVE, &no, sizeof no},
    };
    return target->C_UnwrapKey(session, oaep, rsa_key, head, head_len, template,
                               sizeof template / sizeof template[0], key);
}

/* Destroys the temporary key; a wrap or unwrap that worked but left it behind reports the
 * failure to destroy, since the spec's mechanism leaves no such key. */
static CK_RV discard(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE temporary, CK_RV rv)
{
    CK_RV gone = target->C_DestroyObject(session, temporary);
    return rv == CKR_OK ? gone : rv;
}

/* Both parts' lengths come from the target's own length queries, so that a size query
 * (wrapped == NULL) is answered exactly. */
static CK_RV wrap_parts(CK_SESSION_HANDLE session, CK_MECHANISM *oaep, CK_OBJECT_HANDLE rsa_key,
                        CK_OBJECT_HANDLE temporary, CK_OBJECT_HANDLE key, CK_BYTE *wrapped,
                        CK_ULONG *wrapped_len)
{
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ULONG head = 0, tail = 0;
    CK_RV rv = target->C_WrapKey(session, oaep, rsa_key, temporary, NULL, &head);
    if (rv == CKR_OK)
        rv = target->C_WrapKey(session, &kwp, temporary, key, NULL, &tail);
    if (rv != CKR_OK)
        return rv;
    if (wrapped != NULL && *wrapped_len < head + tail)
        rv = CKR_BUFFER_TOO_SMALL;
    else if (wrapped != NULL) {
        rv = target->C_WrapKey(session, oaep, rsa_key, temporary, wrapped, &head);
        tail = *wrapped_len - head;
        if (rv == CKR_OK)
            rv = target->C_WrapKey(session, &kwp, temporary, key, wrapped + head, &tail);
    }
    if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
        *wrapped_len = head + tail;
    return rv;
}

CK_RV rsa_aes_wrap(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism,
                   CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                   CK_BYTE *wrapped, CK_ULONG *wrapped_len)
{
    CK_ULONG bits;
    CK_RSA_PKCS_OAEP_PARAMS params;
    CK_OBJECT_HANDLE temporary;
    if (!valid(mechanism, &bits, &params))
        return CKR_MECHANISM_PARAM_INVALID;
    if (wrapped_len == NULL)
        return CKR_ARGUMENTS_BAD;
    CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &params, sizeof params};
    CK_RV rv = generate_temporary(session, bits, &temporary);
    if (rv != CKR_OK)
        return rv;
    rv = wrap_parts(session, &oaep, wrapping_key, temporary, key, wrapped, wrapped_len);
    return discard(session, temporary, rv);
}

/* The length of the OAEP part: the RSA modulus in bytes, leading zero bytes aside. */
static CK_RV modulus_length(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE rsa_key, CK_ULONG *len)
{
    CK_BYTE modulus[2048]; /* RSA-16384 */
    CK_ATTRIBUTE attribute = {CKA_MODULUS, modulus, sizeof modulus};
    CK_RV rv = target->C_GetAttributeValue(session, rsa_key, &attribute, 1);
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID)
        return CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT;
    if (rv == CKR_BUFFER_TOO_SMALL)
        return CKR_UNWRAPPING_KEY_SIZE_RANGE;
    if (rv != CKR_OK)
        return rv;
    CK_ULONG skip = 0;
    while (skip < attribute.ulValueLen && modulus[skip] == 0)
        skip++;
    *len = attribute.ulValueLen - skip;
    return CKR_OK;
}

CK_RV rsa_aes_unwrap(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism,
                     CK_OBJECT_HANDLE unwrapping_key, CK_BYTE *wrapped, CK_ULONG wrapped_len,
                     CK_ATTRIBUTE *template, CK_ULONG count, CK_OBJECT_HANDLE *key)
{
    CK_ULONG bits, head;
    CK_RSA_PKCS_OAEP_PARAMS params;
    CK_OBJECT_HANDLE temporary;
    if (!valid(mechanism, &bits, &params))
        return CKR_MECHANISM_PARAM_INVALID;
    if (wrapped == NULL || key == NULL)
        return CKR_ARGUMENTS_BAD;
    CK_RV rv = modulus_length(session, unwrapping_key, &head);
    if (rv != CKR_OK)
        return rv;
    if (wrapped_len <= head)
        return CKR_WRAPPED_KEY_LEN_RANGE;
    CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &params, sizeof params};
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    rv = unwrap_temporary(session, &oaep, unwrapping_key, wrapped, head, &temporary);
    if (rv != CKR_OK)
        return rv;
    rv = target->C_UnwrapKey(session, &kwp, temporary, wrapped + head, wrapped_len - head,
                             template, count, key);
    return discard(session, temporary, rv);
}
