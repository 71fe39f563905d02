package node

import (
	"crypto/tls"
	"strings"
)

type tlsCert = tls.Certificate

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
