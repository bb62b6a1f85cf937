// A Proxy-Wasm HTTP filter in C against the ABI alone (no SDK, no libc), built with
// Debian's clang for wasm32 (build.sh). Same behaviour as the AssemblyScript filter:
// a path starting with /deny gets a local 403 reply with x-denied-by: plait-c; any other
// request gets x-plait-wasm: c; responses get x-plait-config: <plugin configuration>.

typedef unsigned int u32;
typedef unsigned long size_t;

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(proxy_log) int proxy_log(u32 level, const char *msg, size_t size);
IMPORT(proxy_get_buffer_bytes)
int proxy_get_buffer_bytes(u32 type, u32 start, u32 max, char **ret, size_t *ret_size);
IMPORT(proxy_get_header_map_value)
int proxy_get_header_map_value(u32 map, const char *key, size_t key_size, char **ret,
                               size_t *ret_size);
IMPORT(proxy_add_header_map_value)
int proxy_add_header_map_value(u32 map, const char *key, size_t key_size, const char *value,
                               size_t value_size);
IMPORT(proxy_send_local_response)
int proxy_send_local_response(u32 status, const char *details, size_t details_size,
                              const char *body, size_t body_size, const char *headers,
                              size_t headers_size, int grpc_status);

// Allocations only live for the callback that asked for them: the arena starts over at
// every callback (a callback never runs inside another one).
static char arena[64 * 1024];
static size_t arena_used;

EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) {
  size_t at = (arena_used + 7) & ~(size_t)7;
  if (at + size > sizeof(arena)) return 0;
  arena_used = at + size;
  return arena + at;
}

static void copy(char *to, const char *from, size_t n) {
  for (size_t i = 0; i < n; i++) to[i] = from[i];
}

#define S(text) text, sizeof(text) - 1

static char config[256];
static size_t config_size;

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 id, u32 parent) {}

EXPORT(proxy_on_vm_start) int proxy_on_vm_start(u32 root, size_t size) { return 1; }

EXPORT(proxy_on_configure) int proxy_on_configure(u32 root, size_t size) {
  char *data = 0;
  size_t got = 0;
  arena_used = 0;
  if (proxy_get_buffer_bytes(7, 0, size, &data, &got) != 0 || got > sizeof(config)) return 0;
  copy(config, data, got);
  config_size = got;
  proxy_log(2, S("c filter configured"));
  return 1;
}

// one header, serialized: count, (key length, value length), key NUL value NUL
static const char denied_headers[] =
    "\x01\x00\x00\x00\x0b\x00\x00\x00\x07\x00\x00\x00x-denied-by\0plait-c";

EXPORT(proxy_on_request_headers) int proxy_on_request_headers(u32 ctx, u32 n, u32 end) {
  char *path = 0;
  size_t size = 0;
  arena_used = 0;
  if (proxy_get_header_map_value(0, S(":path"), &path, &size) == 0 && size >= 5 &&
      path[0] == '/' && path[1] == 'd' && path[2] == 'e' && path[3] == 'n' && path[4] == 'y') {
    proxy_send_local_response(403, S("denied by the c filter"), S("denied\n"), denied_headers,
                              sizeof(denied_headers), -1);
    return 1;
  }
  proxy_add_header_map_value(0, S("x-plait-wasm"), S("c"));
  return 0;
}

EXPORT(proxy_on_response_headers) int proxy_on_response_headers(u32 ctx, u32 n, u32 end) {
  proxy_add_header_map_value(2, S("x-plait-config"), config, config_size);
  return 0;
}

EXPORT(proxy_on_done) int proxy_on_done(u32 ctx) { return 1; }
