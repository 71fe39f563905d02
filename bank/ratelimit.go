package bank

import (
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ErrRateLimited refuses a caller that exceeded its rate.
var ErrRateLimited = errors.New("bank: too many requests; slow down")

// RateLimiter is a token bucket per key (an account, a peer address), with
// a bounded number of keys so a flood of new keys cannot exhaust memory:
// when full, keys idle the longest are forgotten (and start with a full
// bucket again, which is the conservative direction for honest callers).
type RateLimiter struct {
	rate  rate.Limit
	burst int
	max   int

	mu   sync.Mutex
	keys map[string]*limiterEntry
}

type limiterEntry struct {
	l    *rate.Limiter
	seen time.Time
}

// NewRateLimiter allows perSecond events per key with bursts of burst, for
// at most maxKeys keys at once. perSecond <= 0 disables limiting.
func NewRateLimiter(perSecond float64, burst, maxKeys int) *RateLimiter {
	return &RateLimiter{rate: rate.Limit(perSecond), burst: burst, max: maxKeys, keys: map[string]*limiterEntry{}}
}

// Burst is how many events a key may have at once (0: unlimited).
func (r *RateLimiter) Burst() int {
	if r == nil || r.rate <= 0 {
		return 0
	}
	return r.burst
}

// Allow reports whether one more event for key is within its rate.
func (r *RateLimiter) Allow(key string, now time.Time) bool { return r.AllowN(key, now, 1) }

// AllowN reports whether n more events for key are within its rate, and
// takes them if so. n above the burst never passes.
func (r *RateLimiter) AllowN(key string, now time.Time, n int) bool {
	if r == nil || r.rate <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.keys[key]
	if !ok {
		if len(r.keys) >= r.max {
			r.evict()
		}
		e = &limiterEntry{l: rate.NewLimiter(r.rate, r.burst)}
		r.keys[key] = e
	}
	e.seen = now
	return e.l.AllowN(now, n)
}

// evict forgets the half of the keys idle the longest; it runs once per
// max/2 new keys, so its n log n cost is amortised.
func (r *RateLimiter) evict() {
	times := make([]time.Time, 0, len(r.keys))
	for _, e := range r.keys {
		times = append(times, e.seen)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	cutoff := times[len(times)/2]
	for k, e := range r.keys {
		if !e.seen.After(cutoff) {
			delete(r.keys, k)
		}
	}
}
