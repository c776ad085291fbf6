#ifndef FNV_FNV_H
#define FNV_FNV_H

#include <stddef.h>
#include <stdint.h>

/* fnv1a64 hashes len bytes starting at data with 64-bit FNV-1a. */
uint64_t fnv1a64(const void *data, size_t len);

#endif
