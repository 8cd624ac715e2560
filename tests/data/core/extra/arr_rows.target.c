/* clang -g -O2 -target bpf -c arr_rows.target.c: its .BTF is the target of arr_rows.bpf.o. */
#include "arr_rows.target.h"
struct rows *g_rows;
