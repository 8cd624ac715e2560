// The btfd Go client. Inside this repository it builds offline against Debian's Go packages
// in GOPATH mode (see README.md); outside, with modules: `go mod tidy && go build ./...`.
// The module path has no host: import it with a `replace` directive pointing at a clone.
module btfd/clients/go

go 1.19

require (
	github.com/cilium/ebpf v0.9.1
	golang.org/x/sys v0.3.0
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
