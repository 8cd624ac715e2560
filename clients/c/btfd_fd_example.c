// Get vmlinux BTF from btfd over its fd socket, map it, and hand it to libbpf.
// Proof that a non-Python agent can use the daemon's fd: what is shared is the fd and its
// page-cache pages (our PROT_READ/MAP_PRIVATE mapping of them costs no private memory).
// What is NOT shared: libbpf 1.1's btf__new() copies the raw data it is given (~6 MiB of
// anonymous memory for vmlinux) before parsing, so this agent pays for a copy once libbpf
// holds it; we unmap our mapping right after. Newer libbpf maps /sys/kernel/btf files itself
// in btf__parse() (read-only mmap, no copy), which only helps for kernel files, not memfds.
//
//   make && ./btfd-fd-example /run/btfd/btfd.sock.fd [type-name [spec]]
#include <bpf/btf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int recv_fd(int sock, char *line, size_t cap)
{
	// A union gives the control buffer the alignment struct cmsghdr needs.
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { .iov_base = line, .iov_len = cap - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl.buf, .msg_controllen = sizeof(ctrl.buf) };
	ssize_t n = recvmsg(sock, &msg, 0);
	if (n <= 0)
		return -1;
	line[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int fd;
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
			return fd;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/run/btfd/btfd.sock.fd";
	const char *type = argc > 2 ? argv[2] : "task_struct";
	const char *spec = argc > 3 ? argv[3] : "vmlinux";
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char line[4096];

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "socket path too long: %s\n", path);
		return 2;
	}
	strcpy(addr.sun_path, path);
	int sock = socket(AF_UNIX, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		fprintf(stderr, "cannot connect to %s: %s (is btfd running?)\n", path, strerror(errno));
		return 3;
	}
	char req[256];
	int reqlen = snprintf(req, sizeof(req), "%s\n", spec);
	if (reqlen <= 0 || (size_t)reqlen >= sizeof(req)) {
		fprintf(stderr, "spec name too long: %s\n", spec);
		return 2;
	}
	if (write(sock, req, reqlen) != reqlen) {
		perror("write");
		return 1;
	}
	line[0] = '\0';
	int fd = recv_fd(sock, line, sizeof(line));
	if (fd < 0) {
		// An error answer is one JSON line: {"error": "...", "code": "NOT_FOUND"}
		const char *err = strstr(line, "\"error\"");
		if (err)
			fprintf(stderr, "btfd refused: %s", line);
		else if (line[0])
			fprintf(stderr, "btfd answered without an fd: %s", line);
		else
			fprintf(stderr, "btfd closed the connection without answering\n");
		if (line[0] && line[strlen(line) - 1] != '\n')
			fputc('\n', stderr);
		return err && strstr(line, "PERMISSION_DENIED") ? 3 : 1;
	}
	// The answer is one JSON line: {"spec": "vmlinux", "size": N, "mode": "...", "base": null}
	const char *sz = strstr(line, "\"size\":");
	if (!sz) {
		fprintf(stderr, "unexpected answer: %s", line);
		return 1;
	}
	size_t size = strtoull(sz + 7, NULL, 10);
	void *blob = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (blob == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	// libbpf 1.1 copies the blob here (btf__new -> malloc + memcpy): from now on libbpf
	// works on its own copy and our mapping is no longer needed.
	struct btf *btf = btf__new(blob, size);
	int err = errno;
	munmap(blob, size);
	if (!btf) {
		fprintf(stderr, "libbpf cannot parse the BTF: %s\n", strerror(err));
		return 1;
	}
	int id = btf__find_by_name_kind(btf, type, BTF_KIND_STRUCT);
	if (id < 0) {
		fprintf(stderr, "no struct %s\n", type);
		return 1;
	}
	printf("%s size=%u id=%d\n", type, btf__type_by_id(btf, id)->size, id);
	btf__free(btf);
	close(fd);
	close(sock);
	return 0;
}
