package node

import (
	"bytes"
	"cmp"
	"fmt"
	"net/http"
	"runtime/pprof"
	"strconv"
	"time"
)

// The admin listener's profiling endpoints, behind the token like
// /metrics: a CPU profile of the running daemon, the way to see where its
// time goes in production (docs/OPERATIONS.md, Observability), and a heap
// profile. Both are Go's pprof format (go tool pprof FILE).
const (
	ProfilePath = "/debug/pprof/profile" // ?seconds=N, 1 to MaxProfileSeconds (default 30)
	HeapPath    = "/debug/pprof/heap"
	// MaxProfileSeconds bounds how long one request profiles.
	MaxProfileSeconds = 300
)

// profileHandler takes a CPU profile for the seconds asked, then sends it:
// 400 for a bad duration, 409 if a profile is already being taken (the
// runtime takes one at a time). Profiling costs a few percent of CPU while
// it runs.
func profileHandler(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.Atoi(cmp.Or(r.URL.Query().Get("seconds"), "30"))
	if err != nil || secs < 1 || secs > MaxProfileSeconds {
		http.Error(w, fmt.Sprintf("seconds: want a whole number from 1 to %d", MaxProfileSeconds), http.StatusBadRequest)
		return
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		http.Error(w, "a CPU profile is already being taken", http.StatusConflict)
		return
	}
	t := time.NewTimer(time.Duration(secs) * time.Second)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
	}
	pprof.StopCPUProfile()
	if r.Context().Err() != nil {
		return // the client left
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(buf.Bytes())
}

// heapHandler sends a heap profile (sampled allocations, and what is in
// use as of the last collection).
func heapHandler(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 0); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(buf.Bytes())
}
