/* core/vmm.c - device memory at a reserved address (CUDA virtual memory
 * management): the physical pages behind the address can be handed back and
 * taken again while the address stays, so that work recorded in a CUDA graph
 * that names it stays valid. The driver functions come from the runtime's
 * entry-point lookup: libomni does not link libcuda (a machine without a
 * driver still loads it). Internal: core/tensor.c's reserved buffers. */
#include "cuda_impl.h"

#ifdef OMNI_HAVE_CUDA
#include <cuda.h>
#include <pthread.h>
#include <stdio.h>

static struct {
    CUresult (*granularity)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);
    CUresult (*reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
    CUresult (*addr_free)(CUdeviceptr, size_t);
    CUresult (*create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                       unsigned long long);
    CUresult (*release)(CUmemGenericAllocationHandle);
    CUresult (*map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
    CUresult (*unmap)(CUdeviceptr, size_t);
    CUresult (*access)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
    CUresult (*attr)(int *, CUdevice_attribute, CUdevice);
    CUresult (*errstr)(CUresult, const char **);
    int ok;
    char why[160];
} D;
static pthread_once_t d_once = PTHREAD_ONCE_INIT;

static void d_load(void)
{
    static const char *const names[] = {"cuMemGetAllocationGranularity", "cuMemAddressReserve",
                                        "cuMemAddressFree", "cuMemCreate", "cuMemRelease",
                                        "cuMemMap", "cuMemUnmap", "cuMemSetAccess",
                                        "cuDeviceGetAttribute", "cuGetErrorString"};
    void **slots[] = {(void **)&D.granularity, (void **)&D.reserve, (void **)&D.addr_free,
                      (void **)&D.create, (void **)&D.release, (void **)&D.map,
                      (void **)&D.unmap, (void **)&D.access, (void **)&D.attr,
                      (void **)&D.errstr};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion(names[i], slots[i], 12000, cudaEnableDefault, &q) !=
                cudaSuccess ||
            q != cudaDriverEntryPointSuccess || !*slots[i]) {
            cudaGetLastError();
            snprintf(D.why, sizeof D.why, "the CUDA driver does not provide %s", names[i]);
            return;
        }
    }
    D.ok = 1;
}

static void d_fail(char *why, size_t n, const char *what, CUresult r)
{
    const char *s = NULL;
    if (D.errstr)
        D.errstr(r, &s);
    snprintf(why, n, "%s failed: %s (CUresult %d)", what, s ? s : "unknown error", (int)r);
}

static CUmemAllocationProp d_prop(int dev)
{
    CUmemAllocationProp p = {0};
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = dev;
    return p;
}

int omni__vmm_reserve(int dev, size_t bytes, void **ptr, size_t *size, char *why, size_t n)
{
    pthread_once(&d_once, d_load);
    if (!D.ok) {
        snprintf(why, n, "%s", D.why);
        return OMNI_EDEVICE;
    }
    int vmm = 0;
    CUresult r = D.attr(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev);
    if (r != CUDA_SUCCESS || !vmm) {
        snprintf(why, n, "cuda:%d does not support virtual memory management", dev);
        return OMNI_EDEVICE;
    }
    const CUmemAllocationProp p = d_prop(dev);
    size_t g = 0;
    if ((r = D.granularity(&g, &p, CU_MEM_ALLOC_GRANULARITY_MINIMUM)) != CUDA_SUCCESS || !g) {
        d_fail(why, n, "cuMemGetAllocationGranularity", r);
        return OMNI_ECUDA;
    }
    const size_t sz = ((bytes ? bytes : 1) + g - 1) / g * g;
    CUdeviceptr a = 0;
    if ((r = D.reserve(&a, sz, 0, 0, 0)) != CUDA_SUCCESS) {
        d_fail(why, n, "cuMemAddressReserve", r);
        return OMNI_ENOMEM;
    }
    *ptr = (void *)(uintptr_t)a;
    *size = sz;
    return OMNI_OK;
}

int omni__vmm_map(int dev, void *ptr, size_t size, unsigned long long *handle, char *why, size_t n)
{
    const CUmemAllocationProp p = d_prop(dev);
    CUmemGenericAllocationHandle h = 0;
    const CUdeviceptr a = (CUdeviceptr)(uintptr_t)ptr;
    CUresult r = D.create(&h, size, &p, 0);
    if (r != CUDA_SUCCESS) {
        d_fail(why, n, "cuMemCreate", r);
        return r == CUDA_ERROR_OUT_OF_MEMORY ? OMNI_ENOMEM : OMNI_ECUDA;
    }
    if ((r = D.map(a, size, 0, h, 0)) != CUDA_SUCCESS) {
        d_fail(why, n, "cuMemMap", r);
        D.release(h);
        return OMNI_ECUDA;
    }
    CUmemAccessDesc acc = {0};
    acc.location = p.location;
    acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    if ((r = D.access(a, size, &acc, 1)) != CUDA_SUCCESS) {
        d_fail(why, n, "cuMemSetAccess", r);
        D.unmap(a, size);
        D.release(h);
        return OMNI_ECUDA;
    }
    *handle = (unsigned long long)h;
    return OMNI_OK;
}

void omni__vmm_unmap(void *ptr, size_t size, unsigned long long handle)
{
    D.unmap((CUdeviceptr)(uintptr_t)ptr, size);
    D.release((CUmemGenericAllocationHandle)handle);
}

void omni__vmm_free(void *ptr, size_t size) { D.addr_free((CUdeviceptr)(uintptr_t)ptr, size); }

#else
typedef int omni__vmm_unused; /* ISO C: no empty translation unit */
#endif
