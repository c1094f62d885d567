/*
 * vulkan-devices: prints one JSON line per Vulkan physical device the loader (libvulkan.so.1) finds with the
 * current environment (VK_ICD_FILENAMES etc.): name, type, vendor and device ids, API and driver versions.
 * The GPU check (scripts/gpu-check.sh) uses it for the adapter's name and to tell a real GPU from a
 * CPU-emulated Vulkan driver (SwiftShader, lavapipe report the type "cpu"), because onnxruntime-node does
 * not expose the WebGPU adapter it picked (docs/runtime.md §7).
 *
 * No Vulkan headers are needed: the few structures used are declared here with the layouts of the Vulkan
 * 1.0 specification (VkApplicationInfo, VkInstanceCreateInfo, the leading fields of
 * VkPhysicalDeviceProperties). The loader is opened with dlopen, so the program starts without it and says so.
 * Exit status: 0 with at least one device, 1 with none, 2 when the loader or an instance is unavailable.
 *
 *   gcc -O2 -o vulkan-devices vulkan-devices.c -ldl
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint32_t sType; /* VK_STRUCTURE_TYPE_APPLICATION_INFO = 0 */
  const void *pNext;
  const char *pApplicationName;
  uint32_t applicationVersion;
  const char *pEngineName;
  uint32_t engineVersion;
  uint32_t apiVersion;
} AppInfo;

typedef struct {
  uint32_t sType; /* VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO = 1 */
  const void *pNext;
  uint32_t flags;
  const AppInfo *pApplicationInfo;
  uint32_t enabledLayerCount;
  const char *const *ppEnabledLayerNames;
  uint32_t enabledExtensionCount;
  const char *const *ppEnabledExtensionNames;
} InstanceInfo;

/* The leading fields of VkPhysicalDeviceProperties; the rest (limits, sparse properties, ~800 bytes) goes
 * into the padding, which is larger than the whole structure. */
typedef struct {
  uint32_t apiVersion;
  uint32_t driverVersion;
  uint32_t vendorID;
  uint32_t deviceID;
  uint32_t deviceType;
  char deviceName[256];
  unsigned char rest[4096];
} DeviceProperties;

typedef int32_t (*CreateInstance)(const InstanceInfo *, const void *, void **);
typedef int32_t (*EnumerateDevices)(void *, uint32_t *, void **);
typedef void (*GetProperties)(void *, DeviceProperties *);
typedef void (*DestroyInstance)(void *, const void *);

static const char *type_name(uint32_t type) {
  switch (type) {
    case 1: return "integrated-gpu";
    case 2: return "discrete-gpu";
    case 3: return "virtual-gpu";
    case 4: return "cpu";
    default: return "other";
  }
}

/* JSON string body: the device name is printable ASCII in practice; anything else is replaced. */
static void print_json_text(const char *text) {
  for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
    if (*c == '"' || *c == '\\') printf("\\%c", *c);
    else if (*c < 0x20 || *c > 0x7e) putchar('?');
    else putchar(*c);
  }
}

int main(void) {
  void *loader = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!loader) {
    fprintf(stderr, "vulkan-devices: the Vulkan loader libvulkan.so.1 could not be opened: %s\n", dlerror());
    return 2;
  }
  CreateInstance create = (CreateInstance)dlsym(loader, "vkCreateInstance");
  EnumerateDevices enumerate = (EnumerateDevices)dlsym(loader, "vkEnumeratePhysicalDevices");
  GetProperties properties = (GetProperties)dlsym(loader, "vkGetPhysicalDeviceProperties");
  DestroyInstance destroy = (DestroyInstance)dlsym(loader, "vkDestroyInstance");
  if (!create || !enumerate || !properties || !destroy) {
    fprintf(stderr, "vulkan-devices: libvulkan.so.1 lacks the Vulkan 1.0 entry points\n");
    return 2;
  }
  AppInfo app = {0, NULL, "quantlens-gpu-check", 1, "none", 0, (1u << 22)}; /* VK_API_VERSION_1_0 */
  InstanceInfo info = {1, NULL, 0, &app, 0, NULL, 0, NULL};
  void *instance = NULL;
  int32_t result = create(&info, NULL, &instance);
  if (result != 0) {
    fprintf(stderr, "vulkan-devices: vkCreateInstance failed (VkResult %d): no usable Vulkan driver (ICD)\n", result);
    return 2;
  }
  uint32_t count = 0;
  enumerate(instance, &count, NULL);
  void **devices = calloc(count ? count : 1, sizeof(void *));
  enumerate(instance, &count, devices);
  for (uint32_t i = 0; i < count; i++) {
    DeviceProperties *p = calloc(1, sizeof(DeviceProperties));
    properties(devices[i], p);
    p->deviceName[255] = 0;
    printf("{\"name\":\"");
    print_json_text(p->deviceName);
    printf("\",\"type\":\"%s\",\"vendorId\":\"0x%04x\",\"deviceId\":\"0x%04x\",\"api\":\"%u.%u.%u\",\"driverVersion\":%u}\n",
           type_name(p->deviceType), p->vendorID, p->deviceID, p->apiVersion >> 22, (p->apiVersion >> 12) & 0x3ff,
           p->apiVersion & 0xfff, p->driverVersion);
    free(p);
  }
  free(devices);
  destroy(instance, NULL);
  return count > 0 ? 0 : 1;
}
