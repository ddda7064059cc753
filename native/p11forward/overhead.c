/* p11overhead: nanoseconds per call of a few PKCS #11 functions through each module given, in
 * one run, each module in a child process of its own (a process loads SoftHSM once), the
 * modules taking turns for ROUNDS rounds. Measures what p11forward adds to a call at 0 latency.
 *
 *   p11overhead TOKEN_LABEL CALLS ROUNDS MODULE...     (SOFTHSM2_CONF names the token store)
 *
 * Only public session objects and sessions without login: no PIN is needed.
 * Prints one line per module, round and function: "module<TAB>round<TAB>function<TAB>ns/call".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST *f;

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int fail(const char *what, CK_RV rv)
{
    fprintf(stderr, "p11overhead: %s: 0x%lx\n", what, rv);
    return 1;
}

static CK_SLOT_ID slot_of(const char *label)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_TOKEN_INFO info;
    if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return (CK_SLOT_ID)-1;
    for (CK_ULONG i = 0; i < n; i++) {
        if (f->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
            strncmp((char *)info.label, label, strlen(label)) == 0)
            return slots[i];
    }
    return (CK_SLOT_ID)-1;
}

static int measure(const char *module, const char *label, long calls, int round)
{
    void *lib = dlopen(module, RTLD_NOW);
    CK_C_GetFunctionList get = lib ? (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList") : 0;
    CK_RV rv = get ? get(&f) : CKR_GENERAL_ERROR;
    if (rv != CKR_OK || (rv = f->C_Initialize(NULL)) != CKR_OK)
        return fail(module, rv);
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slot = slot_of(label);
    if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)))
        return fail("C_OpenSession", rv);
    CK_OBJECT_CLASS data = CKO_DATA;
    CK_BBOOL no = CK_FALSE;
    char name[] = "overhead";
    CK_ATTRIBUTE object[] = {{CKA_CLASS, &data, sizeof data}, {CKA_TOKEN, &no, sizeof no},
                             {CKA_PRIVATE, &no, sizeof no}, {CKA_LABEL, name, 8}};
    CK_OBJECT_HANDLE h;
    if ((rv = f->C_CreateObject(s, object, 4, &h)))
        return fail("C_CreateObject", rv);
    CK_SESSION_INFO info;
    CK_BYTE buf[32];
    CK_ATTRIBUTE read = {CKA_LABEL, buf, sizeof buf};
    const char *names[] = {"C_GetSessionInfo", "C_GetAttributeValue", "C_GenerateRandom"};
    for (int fn = 0; fn < 3; fn++) {
        double start = now_ns();
        for (long i = 0; i < calls && rv == CKR_OK; i++) {
            read.ulValueLen = sizeof buf;
            rv = fn == 0 ? f->C_GetSessionInfo(s, &info)
               : fn == 1 ? f->C_GetAttributeValue(s, h, &read, 1)
                         : f->C_GenerateRandom(s, buf, sizeof buf);
        }
        if (rv != CKR_OK)
            return fail(names[fn], rv);
        printf("%s\t%d\t%s\t%.0f\n", module, round, names[fn], (now_ns() - start) / calls);
    }
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: p11overhead TOKEN_LABEL CALLS ROUNDS MODULE...\n");
        return 2;
    }
    long calls = atol(argv[2]);
    int rounds = atoi(argv[3]);
    for (int r = 1; r <= rounds; r++) {
        for (int m = 4; m < argc; m++) {
            fflush(stdout);
            pid_t child = fork();
            if (child == 0) {
                int rc = measure(argv[m], argv[1], calls, r);
                fflush(stdout); /* _exit does not */
                _exit(rc);
            }
            int status;
            waitpid(child, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return 1;
        }
    }
    return 0;
}
