#ifndef REPORT_REPORT_H
#define REPORT_REPORT_H

#include <stddef.h>

/* report_format writes one line of computed results into buf (NUL-terminated)
 * and returns the length snprintf would have written. */
int report_format(char *buf, size_t size);

#endif
