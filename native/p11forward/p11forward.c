/* p11forward: a PKCS #11 module that forwards every call to another module (SoftHSM), after a
 * configurable delay, counting the calls by function; and that adds CKM_RSA_AES_KEY_WRAP
 * (rsa_aes_wrap.c), which SoftHSM 2.6 lacks.
 *
 * Environment, read once when the module is loaded (C_GetFunctionList):
 *   KEYPARITY_P11_TARGET      the module to forward to (required), e.g. libsofthsm2.so
 *   KEYPARITY_P11_LATENCY_US  microseconds each call waits before it is forwarded (default 0):
 *                             the calling thread sleeps (nanosleep), as it would waiting for
 *                             a network HSM's answer; other threads go on meanwhile (the
 *                             waiting thread's timer slack is set to 1 ns)
 *   KEYPARITY_P11_CALLS       a file that receives the calls counted so far, as JSON, at each
 *                             C_Finalize and when the process exits; "%p" becomes the pid
 *
 * Besides C_GetFunctionList it exports p11forward_function(i) and p11forward_calls(i): the
 * counts so far, read in the same process (keyparity bench --calls, between phases).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "p11forward.h"

/* Every function of the v2.40 function list but C_GetFunctionList, in the list's order.
 * F: forwarded as it is. E: ext_<name> below decides (it may forward). */
#define FUNCTIONS(F, E) \
    F(C_Initialize, (CK_VOID_PTR a), (a)) \
    E(C_Finalize, (CK_VOID_PTR a), (a)) \
    F(C_GetInfo, (CK_INFO_PTR a), (a)) \
    F(C_GetSlotList, (CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c), (a, b, c)) \
    F(C_GetSlotInfo, (CK_SLOT_ID a, CK_SLOT_INFO_PTR b), (a, b)) \
    F(C_GetTokenInfo, (CK_SLOT_ID a, CK_TOKEN_INFO_PTR b), (a, b)) \
    E(C_GetMechanismList, (CK_SLOT_ID a, CK_MECHANISM_TYPE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
    E(C_GetMechanismInfo, (CK_SLOT_ID a, CK_MECHANISM_TYPE b, CK_MECHANISM_INFO_PTR c), \
      (a, b, c)) \
    F(C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d), \
      (a, b, c, d)) \
    F(C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_SetPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, \
                 CK_ULONG e), (a, b, c, d, e)) \
    F(C_OpenSession, (CK_SLOT_ID a, CK_FLAGS b, CK_VOID_PTR c, CK_NOTIFY d, \
                      CK_SESSION_HANDLE_PTR e), (a, b, c, d, e)) \
    F(C_CloseSession, (CK_SESSION_HANDLE a), (a)) \
    F(C_CloseAllSessions, (CK_SLOT_ID a), (a)) \
    F(C_GetSessionInfo, (CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b), (a, b)) \
    F(C_GetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
    F(C_SetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, \
                            CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e), (a, b, c, d, e)) \
    F(C_Login, (CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d), \
      (a, b, c, d)) \
    F(C_Logout, (CK_SESSION_HANDLE a), (a)) \
    F(C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, \
                       CK_OBJECT_HANDLE_PTR d), (a, b, c, d)) \
    F(C_CopyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d, \
                     CK_OBJECT_HANDLE_PTR e), (a, b, c, d, e)) \
    F(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b)) \
    F(C_GetObjectSize, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c), (a, b, c)) \
    F(C_GetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, \
                            CK_ULONG d), (a, b, c, d)) \
    F(C_SetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, \
                            CK_ULONG d), (a, b, c, d)) \
    F(C_FindObjectsInit, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_FindObjects, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, \
                      CK_ULONG_PTR d), (a, b, c, d)) \
    F(C_FindObjectsFinal, (CK_SESSION_HANDLE a), (a)) \
    F(C_EncryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
    F(C_Encrypt, IO_ARGS, (a, b, c, d, e)) \
    F(C_EncryptUpdate, IO_ARGS, (a, b, c, d, e)) \
    F(C_EncryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
    F(C_DecryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
    F(C_Decrypt, IO_ARGS, (a, b, c, d, e)) \
    F(C_DecryptUpdate, IO_ARGS, (a, b, c, d, e)) \
    F(C_DecryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
    F(C_DigestInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b), (a, b)) \
    F(C_Digest, IO_ARGS, (a, b, c, d, e)) \
    F(C_DigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_DigestKey, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b)) \
    F(C_DigestFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
    F(C_SignInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
    F(C_Sign, IO_ARGS, (a, b, c, d, e)) \
    F(C_SignUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_SignFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c)) \
    F(C_SignRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), \
      (a, b, c)) \
    F(C_SignRecover, IO_ARGS, (a, b, c, d, e)) \
    F(C_VerifyInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c)) \
    F(C_Verify, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e), \
      (a, b, c, d, e)) \
    F(C_VerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_VerifyFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_VerifyRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), \
      (a, b, c)) \
    F(C_VerifyRecover, IO_ARGS, (a, b, c, d, e)) \
    F(C_DigestEncryptUpdate, IO_ARGS, (a, b, c, d, e)) \
    F(C_DecryptDigestUpdate, IO_ARGS, (a, b, c, d, e)) \
    F(C_SignEncryptUpdate, IO_ARGS, (a, b, c, d, e)) \
    F(C_DecryptVerifyUpdate, IO_ARGS, (a, b, c, d, e)) \
    F(C_GenerateKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, \
                      CK_OBJECT_HANDLE_PTR e), (a, b, c, d, e)) \
    F(C_GenerateKeyPair, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, \
                          CK_ULONG d, CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g, \
                          CK_OBJECT_HANDLE_PTR h), (a, b, c, d, e, f, g, h)) \
    E(C_WrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, \
                  CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f), (a, b, c, d, e, f)) \
    E(C_UnwrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d, \
                    CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g, CK_OBJECT_HANDLE_PTR h), \
      (a, b, c, d, e, f, g, h)) \
    F(C_DeriveKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, \
                    CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f), (a, b, c, d, e, f)) \
    F(C_SeedRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_GenerateRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c)) \
    F(C_GetFunctionStatus, (CK_SESSION_HANDLE a), (a)) \
    F(C_CancelFunction, (CK_SESSION_HANDLE a), (a)) \
    F(C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c), (a, b, c))

/* data in, data out with its length: the shape of a dozen functions */
#define IO_ARGS \
    (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e)

#define INDEX(name, params, args) I_##name,
enum { FUNCTIONS(INDEX, INDEX) N_FUNCTIONS };

#define NAME(name, params, args) #name,
static const char *const names[N_FUNCTIONS] = { FUNCTIONS(NAME, NAME) };

CK_FUNCTION_LIST *target;
static atomic_ulong calls[N_FUNCTIONS];
static struct timespec latency;
static unsigned long latency_us;
static const char *calls_path;
static CK_RV loaded = CKR_GENERAL_ERROR;

/* What each call does before it reaches the target: it is counted, then waits as a network
 * round trip would. The thread's timer slack (50 us by default) is set to 1 ns so that a sleep
 * of L ends close to L; the kernel's wake-up delay remains (docs/benchmarks.md). */
static void arrive(int function)
{
    atomic_fetch_add_explicit(&calls[function], 1, memory_order_relaxed);
    if (latency_us == 0)
        return;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct timespec left = latency;
    while (nanosleep(&left, &left) == -1 && errno == EINTR)
        ;
}

/* The counts as JSON, written to a temporary file renamed over KEYPARITY_P11_CALLS, so that a
 * reader never sees half a file. */
static void write_calls(void)
{
    if (calls_path == NULL)
        return;
    char path[4096], tmp[4160];
    const char *p = strstr(calls_path, "%p");
    if (p != NULL)
        snprintf(path, sizeof path, "%.*s%ld%s", (int)(p - calls_path), calls_path,
                 (long)getpid(), p + 2);
    else
        snprintf(path, sizeof path, "%s", calls_path);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *out = fopen(tmp, "w");
    if (out == NULL) {
        fprintf(stderr, "p11forward: cannot write %s: %s\n", tmp, strerror(errno));
        return;
    }
    fprintf(out, "{\"pid\": %ld, \"latency_us\": %lu, \"calls\": {", (long)getpid(), latency_us);
    const char *sep = "";
    for (int i = 0; i < N_FUNCTIONS; i++) {
        unsigned long n = atomic_load(&calls[i]);
        if (n) {
            fprintf(out, "%s\"%s\": %lu", sep, names[i], n);
            sep = ", ";
        }
    }
    fprintf(out, "}}\n");
    if (fclose(out) != 0 || rename(tmp, path) != 0)
        fprintf(stderr, "p11forward: cannot write %s: %s\n", path, strerror(errno));
}

__attribute__((destructor)) static void at_exit(void)
{
    if (loaded == CKR_OK)
        write_calls();
}

static CK_RV ext_C_Finalize(CK_VOID_PTR reserved)
{
    CK_RV rv = target->C_Finalize(reserved);
    write_calls();
    return rv;
}

static CK_RV ext_C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                                    CK_ULONG_PTR count)
{
    return rsa_aes_mechanism_list(slot, list, count);
}

static CK_RV ext_C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                    CK_MECHANISM_INFO_PTR info)
{
    if (type == CKM_RSA_AES_KEY_WRAP)
        return rsa_aes_mechanism_info(slot, type, info);
    return target->C_GetMechanismInfo(slot, type, info);
}

static CK_RV ext_C_WrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                           CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                           CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len)
{
    if (mechanism != NULL && mechanism->mechanism == CKM_RSA_AES_KEY_WRAP)
        return rsa_aes_wrap(session, mechanism, wrapping_key, key, wrapped, wrapped_len);
    return target->C_WrapKey(session, mechanism, wrapping_key, key, wrapped, wrapped_len);
}

static CK_RV ext_C_UnwrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                             CK_OBJECT_HANDLE unwrapping_key, CK_BYTE_PTR wrapped,
                             CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR template, CK_ULONG count,
                             CK_OBJECT_HANDLE_PTR key)
{
    if (mechanism != NULL && mechanism->mechanism == CKM_RSA_AES_KEY_WRAP)
        return rsa_aes_unwrap(session, mechanism, unwrapping_key, wrapped, wrapped_len,
                              template, count, key);
    return target->C_UnwrapKey(session, mechanism, unwrapping_key, wrapped, wrapped_len,
                               template, count, key);
}

#define FORWARD(name, params, args) \
    static CK_RV fw_##name params { arrive(I_##name); return target->name args; }
#define EXTEND(name, params, args) \
    static CK_RV fw_##name params { arrive(I_##name); return ext_##name args; }
FUNCTIONS(FORWARD, EXTEND)

static CK_FUNCTION_LIST ours = {
    .version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
#define ENTRY(name, params, args) .name = fw_##name,
    FUNCTIONS(ENTRY, ENTRY)
    .C_GetFunctionList = C_GetFunctionList,
};

static int parse_latency(void)
{
    const char *text = getenv("KEYPARITY_P11_LATENCY_US");
    if (text == NULL || *text == '\0')
        return 0;
    char *end;
    errno = 0;
    unsigned long us = strtoul(text, &end, 10);
    if (*text == '-' || *end != '\0' || errno != 0 || us > 60UL * 1000 * 1000) {
        fprintf(stderr, "p11forward: KEYPARITY_P11_LATENCY_US=%s is not a number of "
                "microseconds from 0 to 60000000\n", text);
        return -1;
    }
    latency_us = us;
    latency.tv_sec = (time_t)(us / 1000000);
    latency.tv_nsec = (long)(us % 1000000) * 1000;
    return 0;
}

static CK_RV load_target(void)
{
    const char *path = getenv("KEYPARITY_P11_TARGET");
    if (path == NULL || *path == '\0') {
        fprintf(stderr, "p11forward: set KEYPARITY_P11_TARGET to the PKCS #11 module to "
                "forward to (for example /usr/lib/softhsm/libsofthsm2.so)\n");
        return CKR_GENERAL_ERROR;
    }
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "p11forward: cannot load KEYPARITY_P11_TARGET=%s: %s\n", path,
                dlerror());
        return CKR_GENERAL_ERROR;
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(handle, "C_GetFunctionList");
    if (get == NULL || get == C_GetFunctionList) {
        fprintf(stderr, "p11forward: KEYPARITY_P11_TARGET=%s is %s\n", path,
                get == NULL ? "not a PKCS #11 module (no C_GetFunctionList)" : "this module");
        return CKR_GENERAL_ERROR;
    }
    CK_RV rv = get(&target);
    if (rv != CKR_OK)
        fprintf(stderr, "p11forward: C_GetFunctionList of %s failed: 0x%lx\n", path, rv);
    return rv;
}

static void load(void)
{
    /* a copy: the environment is put back after the module is loaded (keyparity's module_env) */
    const char *path = getenv("KEYPARITY_P11_CALLS");
    calls_path = path != NULL ? strdup(path) : NULL;
    if (parse_latency() != 0)
        return;
    loaded = load_target();
}

/* The calls counted so far, for a caller in the same process (keyparity.bench.calls reads
 * them between the phases of a run through ctypes): the name of function i, or NULL past the
 * last; and its count. Not part of PKCS #11; nothing is delayed or counted by asking. */
__attribute__((visibility("default"))) const char *p11forward_function(unsigned long i)
{
    return i < N_FUNCTIONS ? names[i] : NULL;
}

__attribute__((visibility("default"))) unsigned long p11forward_calls(unsigned long i)
{
    return i < N_FUNCTIONS ? atomic_load(&calls[i]) : 0;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, load);
    if (loaded != CKR_OK)
        return loaded;
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &ours;
    return CKR_OK;
}
