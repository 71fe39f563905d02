package node

import (
	"context"
	"crypto/tls"
	"strings"
	"time"

	"google.golang.org/grpc"
)

type tlsCert = tls.Certificate

func wait(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}

// stop drains servers gracefully, forcing them after 10 seconds.
func stop(servers ...*grpc.Server) {
	for _, s := range servers {
		if s == nil {
			continue
		}
		ok := make(chan struct{})
		go func() { s.GracefulStop(); close(ok) }()
		select {
		case <-ok:
		case <-time.After(10 * time.Second):
			s.Stop()
		}
	}
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
