package bank

import (
	"fmt"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := NewRateLimiter(2, 4, 100)
	for i := range 4 {
		if !l.Allow("a", now) {
			t.Fatalf("burst call %d refused", i)
		}
	}
	if l.Allow("a", now) {
		t.Fatal("fifth call within the burst allowed")
	}
	if !l.Allow("b", now) {
		t.Fatal("another key shares the first one's bucket")
	}
	if !l.Allow("a", now.Add(time.Second)) {
		t.Fatal("no refill after a second at 2/s")
	}
	// A flood of new keys stays bounded.
	for i := range 1000 {
		l.Allow(fmt.Sprint("k", i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(l.keys); n > 100 {
		t.Fatalf("%d keys kept, want at most 100", n)
	}
	var off *RateLimiter
	if !off.Allow("x", now) || !NewRateLimiter(0, 0, 1).Allow("x", now) {
		t.Fatal("a disabled limiter refused")
	}
}
