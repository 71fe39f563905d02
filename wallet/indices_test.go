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
		first, err := w.reserveIndices(n, withdrawal)
		if err != nil {
			t.Fatal(err)
		}
		return first
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
