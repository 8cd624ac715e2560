/* Look types up by name in btfd's shared index, from C, with nothing but docs/PROTOCOL.md:
 * ask the fd socket for "vmlinux +index", map the blob and the index, check the index the way
 * the protocol says, and answer each NAME with the ids of the types named so.
 *
 *   btfd-index-lookup FD_SOCKET NAME...     prints "NAME: ID ID ..." a line (ids ascending)
 *
 * Exit 0 when every check passed, 1 on a refused answer or a failed check (the message says
 * which). Needs libc and zlib (crc32). Little- and big-endian blobs on a host of either order
 * are not mixed here: the blob must have the host's byte order. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

struct index_hdr {
	uint32_t magic;
	uint16_t version, hdr_len;
	uint32_t flags, blob_size, blob_crc, start_id, count, interval, ncheckpoints, nbuckets,
		nnamed, first_named, hash, index_crc;
	uint8_t reserved[8];
};

static int fail(const char *what)
{
	fprintf(stderr, "btfd-index-lookup: %s\n", what);
	return 1;
}

/* Record length in bytes (include/uapi/linux/btf.h). */
static long record_len(uint32_t info)
{
	uint32_t kind = (info >> 24) & 0x1f, vlen = info & 0xffff;
	switch (kind) {
	case 1: case 14: case 17: return 16;                     /* INT, VAR, DECL_TAG */
	case 3: return 24;                                       /* ARRAY */
	case 4: case 5: case 15: case 19: return 12 + 12L * vlen; /* STRUCT, UNION, DATASEC, ENUM64 */
	case 6: case 13: return 12 + 8L * vlen;                  /* ENUM, FUNC_PROTO */
	case 2: case 7: case 8: case 9: case 10: case 11: case 12: case 16: case 18: return 12;
	default: return -1;
	}
}

/* libbpf's essential name length: cut at the last "X___Y" with X and Y not '_'. */
static size_t essential_len(const char *n)
{
	size_t len = strlen(n);
	for (long i = (long)len - 5; i >= 0; i--)
		if (n[i] != '_' && !strncmp(n + i + 1, "___", 3) && n[i + 4] != '_')
			return i + 1;
	return len;
}

static uint32_t sample_crc(const uint8_t *blob, uint32_t size)
{
	const uint32_t s = 64 * 1024;
	if (size <= 2 * s)
		return crc32(0, blob, size);
	return crc32(crc32(0, blob, s), blob + size - s, s);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return fprintf(stderr, "usage: %s FD_SOCKET NAME...\n", argv[0]), 2;
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[1]);
	if (connect(s, (struct sockaddr *)&a, sizeof(a)))
		return fail(strerror(errno));
	if (write(s, "vmlinux +index\n", 15) != 15)
		return fail("write failed");
	char line[4096], ctrl[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = {line, sizeof(line) - 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
			   .msg_controllen = sizeof(ctrl)};
	ssize_t n = recvmsg(s, &m, 0);
	line[n > 0 ? n : 0] = 0;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(2 * sizeof(int)))
		return fprintf(stderr, "btfd-index-lookup: no blob and index fds: %s", line), 1;
	int fds[2];
	memcpy(fds, CMSG_DATA(c), sizeof(fds));
	char *sz = strstr(line, "\"size\":"), *isz = strstr(line, "\"index\": {\"size\":");
	if (!sz || !isz)
		return fail("answer without size or index size");
	size_t blob_size = strtoull(sz + 7, NULL, 10), index_size = strtoull(isz + 18, NULL, 10);
	const uint8_t *blob = mmap(NULL, blob_size, PROT_READ, MAP_PRIVATE, fds[0], 0);
	const uint8_t *idx = mmap(NULL, index_size, PROT_READ, MAP_PRIVATE, fds[1], 0);
	if (blob == MAP_FAILED || idx == MAP_FAILED)
		return fail("mmap failed");

	/* The checks docs/PROTOCOL.md lists. */
	struct index_hdr h;
	if (index_size < sizeof(h))
		return fail("index shorter than its header");
	memcpy(&h, idx, sizeof(h));
	if (h.magic != 0x58465442 || h.version != 1 || h.hdr_len != 64 || h.hash != 1 || h.interval != 16)
		return fail("not a version-1 index of this byte order");
	size_t words = h.ncheckpoints + (h.nbuckets ? h.nbuckets + 1 : 0) + h.nnamed;
	if (index_size != 64 + 4 * words || h.ncheckpoints != (h.count + 15) / 16)
		return fail("index size does not match its header");
	struct index_hdr z = h;
	z.index_crc = 0;
	if (crc32(crc32(0, (const uint8_t *)&z, 64), idx + 64, index_size - 64) != h.index_crc)
		return fail("index checksum does not match");
	if (h.blob_size != blob_size || h.blob_crc != sample_crc(blob, blob_size))
		return fail("index belongs to another blob");
	if (h.flags & 1)
		return fail("name-sorted blob: binary-search it instead (not shown here)");
	uint32_t type_off, type_len, str_off, str_len, hdr_len;
	memcpy(&hdr_len, blob + 4, 4);
	memcpy(&type_off, blob + 8, 4);
	memcpy(&type_len, blob + 12, 4);
	memcpy(&str_off, blob + 16, 4);
	memcpy(&str_len, blob + 20, 4);
	const uint8_t *types = blob + hdr_len + type_off;
	const char *strs = (const char *)blob + hdr_len + str_off;
	const uint32_t *ck = (const uint32_t *)(idx + 64), *dir = ck + h.ncheckpoints,
		       *ent = dir + h.nbuckets + 1;
	if (dir[0] != 0 || dir[h.nbuckets] != h.nnamed)
		return fail("directory does not cover the entries");

	for (int q = 2; q < argc; q++) {
		const char *name = argv[q];
		size_t el = essential_len(name);
		uint32_t b = crc32(0, (const uint8_t *)name, el) & (h.nbuckets - 1);
		printf("%s:", name);
		uint32_t found[64];
		int nfound = 0;
		for (uint32_t i = dir[b]; i < dir[b + 1] && nfound < 64; i++) {
			uint32_t w = ent[i], name_off, info;
			if (4ULL * w + 12 > type_len)
				return fail("entry past the type section");
			memcpy(&name_off, types + 4ULL * w, 4);
			if (name_off >= str_len || strcmp(strs + name_off, name))
				continue;
			/* word offset -> id: the last checkpoint at or before it, then step. */
			uint32_t lo = 0, hi = h.ncheckpoints;
			while (hi - lo > 1) {
				uint32_t mid = (lo + hi) / 2;
				if (ck[mid] <= w) lo = mid; else hi = mid;
			}
			uint32_t id = h.start_id + 16 * lo, p = ck[lo];
			while (p < w) {
				memcpy(&info, types + 4ULL * p + 4, 4);
				long len = record_len(info);
				if (len < 0)
					return fail("unknown kind while stepping");
				p += len / 4;
				id++;
			}
			if (p != w)
				return fail("entry not at a record boundary");
			found[nfound++] = id;
		}
		for (int i = 1; i < nfound; i++) /* ascending ids, like the Python reader */
			for (int j = i; j > 0 && found[j - 1] > found[j]; j--) {
				uint32_t t = found[j]; found[j] = found[j - 1]; found[j - 1] = t;
			}
		for (int i = 0; i < nfound; i++)
			printf(" %u", found[i]);
		printf("\n");
	}
	return 0;
}
