// Package pb holds the gRPC services of blindbank, generated from
// bank.proto, merchant.proto and signer.proto. Regenerate with `go generate
// ./proto` after installing the generators with proto/install-tools.sh; CI
// checks the output is fresh.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative bank.proto merchant.proto signer.proto
