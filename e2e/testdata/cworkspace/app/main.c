#include <stdio.h>

#include "banner/banner.h"
#include "report/report.h"

int main(void) {
  char line[256];
  report_format(line, sizeof line);
  printf("%s: %s\n", BANNER, line);
  return 0;
}
