package wallet

import "testing"

// TestParkedIndices drives the planchet counter through refusals: a
// refused withdrawal's indices go to the next withdrawal, never to a swap
// or recoup, also when a smaller refusal re-parks part of them.
func TestParkedIndices(t *testing.T) {
	w, err := Create(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	span := func(first uint64, n int) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = first + uint64(i)
		}
		return out
	}
	reserve := func(n int, withdrawal bool) uint64 {
		t.Helper()
		r, err := w.reserveIndices(n, withdrawal)
		if err != nil {
			t.Fatal(err)
		}
		return r.first
	}
	park := func(first uint64, n int) {
		t.Helper()
		if err := w.parkIndices(span(first, n)); err != nil {
			t.Fatal(err)
		}
	}

	a := reserve(64, true) // refused
	park(a, 64)
	b := reserve(8, true) // refused too, taking fewer
	if b != a {
		t.Fatalf("the next withdrawal got %d, want the parked %d", b, a)
	}
	park(b, 8)
	if s := reserve(4, false); s < a+64 {
		t.Fatalf("a swap got index %d, inside the refused withdrawals' %d–%d", s, a, a+63)
	}
	// Once a swap skipped them, nothing is parked: a refusal after a
	// later reservation parks nothing either.
	c := reserve(8, true)
	d := reserve(4, false)
	park(c, 8) // not the last reservation: stays skipped
	if e := reserve(2, true); e != d+4 {
		t.Fatalf("a withdrawal after an unparkable refusal got %d, want %d", e, d+4)
	}
	// A withdrawal that takes part of the parked range leaves the rest
	// parked; a swap then skips it.
	f := reserve(16, true)
	park(f, 16)
	if g := reserve(4, true); g != f {
		t.Fatalf("withdrawal got %d, want the parked %d", g, f)
	}
	if h := reserve(1, false); h < f+16 {
		t.Fatalf("a swap got index %d, inside the parked %d–%d", h, f, f+15)
	}
}

// TestIndicesGivenBack: a request that failed before anything signed was
// sent (its first round refused, say) gives its indices back, and the
// parked range as it was, unless another was reserved since.
func TestIndicesGivenBack(t *testing.T) {
	w, err := Create(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	reserve := func(n int, withdrawal bool) reservation {
		t.Helper()
		r, err := w.reserveIndices(n, withdrawal)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	giveBack := func(r reservation) {
		t.Helper()
		if err := w.giveBack(r); err != nil {
			t.Fatal(err)
		}
	}
	a := reserve(64, true)
	giveBack(a)
	if b := reserve(8, true); b.first != a.first {
		t.Fatalf("after a give-back the next request got %d, want %d", b.first, a.first)
	} else {
		giveBack(b)
	}
	// A swap that skipped a parked range, given back: the range is
	// parked again, for withdrawals only.
	p := reserve(16, true)
	if err := w.parkIndices([]uint64{p.first, p.first + 15}); err != nil {
		t.Fatal(err)
	}
	s := reserve(4, false)
	if s.first < p.first+16 {
		t.Fatalf("a swap got %d, inside the parked %d–%d", s.first, p.first, p.first+15)
	}
	giveBack(s)
	if s2 := reserve(4, false); s2.first != s.first {
		t.Fatalf("a swap after a give-back got %d, want %d", s2.first, s.first)
	} else {
		giveBack(s2)
	}
	if wd := reserve(4, true); wd.first != p.first {
		t.Fatalf("a withdrawal after a swap's give-back got %d, want the parked %d", wd.first, p.first)
	}
	// Reserved since: nothing is given back.
	x := reserve(8, false)
	y := reserve(2, false)
	giveBack(x)
	if z := reserve(1, false); z.first != y.end {
		t.Fatalf("after a give-back behind a later reservation, got %d, want %d", z.first, y.end)
	}
}
