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
	reserve := func(n int, withdrawal bool) reservation {
		t.Helper()
		r, err := w.reserveIndices(n, withdrawal)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	park := func(r reservation) {
		t.Helper()
		if err := w.parkIndices(r); err != nil {
			t.Fatal(err)
		}
	}

	a := reserve(64, true) // refused
	park(a)
	b := reserve(8, true) // refused too, taking fewer
	if b.first != a.first {
		t.Fatalf("the next withdrawal got %d, want the parked %d", b.first, a.first)
	}
	park(b)
	if s := reserve(4, false); s.first < a.first+64 {
		t.Fatalf("a swap got index %d, inside the refused withdrawals' %d–%d", s.first, a.first, a.first+63)
	}
	// Once a swap skipped them, nothing is parked: a refusal after a
	// later reservation parks nothing either.
	c := reserve(8, true)
	d := reserve(4, false)
	park(c) // not the last reservation: stays skipped
	if e := reserve(2, true); e.first != d.end {
		t.Fatalf("a withdrawal after an unparkable refusal got %d, want %d", e.first, d.end)
	}
	// A withdrawal that takes part of the parked range leaves the rest
	// parked; a swap then skips it.
	f := reserve(16, true)
	park(f)
	if g := reserve(4, true); g.first != f.first {
		t.Fatalf("withdrawal got %d, want the parked %d", g.first, f.first)
	}
	if h := reserve(1, false); h.first < f.end {
		t.Fatalf("a swap got index %d, inside the parked %d–%d", h.first, f.first, f.end-1)
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
	if err := w.parkIndices(p); err != nil {
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

// TestGiveBackKeepsLaterParking: withdrawal A reserves indices and its
// first round is in flight; withdrawal B reserves the next ones, is
// refused, and parks them (counter back to A's end, parked up to B's).
// A's first round fails: its give-back must see that the counter changed
// since its reservation (its generation), though m/next is at A's end
// again. Restoring A's state dropped B's parking, and a swap then took B's
// indices: planchets the bank saw in B's account-signed withdrawal.
func TestGiveBackKeepsLaterParking(t *testing.T) {
	w, err := Create(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, err := w.reserveIndices(8, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.reserveIndices(4, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.parkIndices(b); err != nil {
		t.Fatal(err)
	}
	if err := w.giveBack(a); err != nil {
		t.Fatal(err)
	}
	s, err := w.reserveIndices(16, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.first < b.end && b.first < s.end {
		t.Fatalf("a swap got indices %d–%d, over %d–%d, parked for withdrawals only (a refused withdrawal's)", s.first, s.end-1, b.first, b.end-1)
	}
}
