/* A minimal agent on Debian's libbpf: load vmlinux BTF, find task_struct, then stay alive
 * (so its memory can be read) until stdin closes. With "idle" it only waits: the baseline
 * that the BTF work is measured against. Prints {"load_find_ms": ...} on stdout. */
#include <bpf/btf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	char c;
	if (argc > 1 && strcmp(argv[1], "idle") == 0) {
		printf("{\"idle\": true}\n");
		fflush(stdout);
		while (read(0, &c, 1) > 0)
			;
		return 0;
	}
	double t0 = now_ms();
	struct btf *btf = btf__load_vmlinux_btf();
	if (!btf) {
		fprintf(stderr, "btf__load_vmlinux_btf: %s\n", strerror(errno));
		return 1;
	}
	int id = btf__find_by_name_kind(btf, "task_struct", BTF_KIND_STRUCT);
	const struct btf_type *t = btf__type_by_id(btf, id);
	double t1 = now_ms();
	printf("{\"load_find_ms\": %.3f, \"id\": %d, \"size\": %u}\n", t1 - t0, id, t ? t->size : 0);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	btf__free(btf);
	return 0;
}
