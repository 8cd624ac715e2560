/* The C reference for `btfctl lookup NAME`: load vmlinux BTF with Debian's libbpf, find NAME,
 * print its C declaration with btf_dump (what bpftool does). */
#include <bpf/btf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void out(void *ctx, const char *fmt, va_list args)
{
	(void)ctx;
	vprintf(fmt, args);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "task_struct";
	struct btf *btf = btf__load_vmlinux_btf();
	if (!btf)
		return fprintf(stderr, "btf__load_vmlinux_btf: %s\n", strerror(errno)), 1;
	int id = btf__find_by_name(btf, name);
	if (id < 0)
		return fprintf(stderr, "no type named %s\n", name), 1;
	struct btf_dump *d = btf_dump__new(btf, out, NULL, NULL);
	if (!d)
		return 1;
	btf_dump__dump_type(d, id);
	btf_dump__free(d);
	btf__free(btf);
	return 0;
}
