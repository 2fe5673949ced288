/* A stand-in for Windows' bcryptprimitives.dll, for running devtls.exe under
 * Wine 8 (Debian 12), which does not ship that DLL. Rust's standard library
 * (1.78 and later) imports ProcessPrng from it to seed HashMap keys; this
 * answers from RtlGenRandom (advapi32's SystemFunction036, which Wine
 * implements from the host's /dev/urandom). Never shipped with devtls: only
 * scripts/test.sh's opt-in Windows run builds it into its Wine prefix. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
