//go:build !linux

package transport

import (
	"net"
	"time"
)

// setUserTimeout: gRPC sets TCP_USER_TIMEOUT on Linux only.
func setUserTimeout(net.Conn, time.Duration) {}
