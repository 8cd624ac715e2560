#!/bin/sh
# Run `go` on this module offline against Debian's Go packages: GOPATH mode over
# /usr/share/gocode, this directory linked in as import path btfd/clients/go.
#
#   clients/go/debian-go.sh test ./...        clients/go/debian-go.sh build -o agent ./cmd/btfd-agent
#
# GOPATH and the build cache live in $BTFD_GO_DIR (default: a directory under ${TMPDIR:-/tmp}
# named after this checkout), never in the tree. The Debian packages: `make sysdeps`.
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
dir=${BTFD_GO_DIR:-${TMPDIR:-/tmp}/btfd-go-$(id -u)-$(printf %s "$here" | cksum | cut -d' ' -f1)}
mkdir -p "$dir/src/btfd/clients"
ln -sfn "$here" "$dir/src/btfd/clients/go"
cd "$dir/src/btfd/clients/go"
GO111MODULE=off GOPATH="$dir:/usr/share/gocode" GOCACHE="$dir/cache" GOFLAGS= GOPROXY=off \
	exec go "$@"
