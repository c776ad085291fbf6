#include "fnv/fnv.h"

uint64_t fnv1a64(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}
