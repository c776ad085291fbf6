#include <stdio.h>

#include "report/report.h"

int main(void) {
  char line[256];
  report_format(line, sizeof line);
  puts(line);
  return 0;
}
