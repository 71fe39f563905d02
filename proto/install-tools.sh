#!/usr/bin/env bash
# Installs the exact protobuf generators this repository's generated code was
# made with: protoc from Debian, the Go plugins from the Go module proxy.
set -euo pipefail
if ! command -v protoc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
fi
GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export GOBIN
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
