/* p11forward: what the forwarding table (p11forward.c) and CKM_RSA_AES_KEY_WRAP
 * (rsa_aes_wrap.c) share. */
#ifndef P11FORWARD_H
#define P11FORWARD_H

#include <p11-kit/pkcs11.h>

/* The module every call is forwarded to (KEYPARITY_P11_TARGET). Calls made through it directly
 * are neither delayed nor counted: they are the inside of one call of ours. */
extern CK_FUNCTION_LIST *target;

CK_RV rsa_aes_mechanism_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE *list, CK_ULONG *count);
CK_RV rsa_aes_mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO *info);
CK_RV rsa_aes_wrap(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism,
                   CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                   CK_BYTE *wrapped, CK_ULONG *wrapped_len);
CK_RV rsa_aes_unwrap(CK_SESSION_HANDLE session, CK_MECHANISM *mechanism,
                     CK_OBJECT_HANDLE unwrapping_key, CK_BYTE *wrapped, CK_ULONG wrapped_len,
                     CK_ATTRIBUTE *template, CK_ULONG count, CK_OBJECT_HANDLE *key);

#endif
