package merchant

import (
	"fmt"
	"testing"
)

func TestOrderCache(t *testing.T) {
	c := newOrderCache()
	if _, ok := c.get("ord-1"); ok {
		t.Fatal("an empty cache holds an order")
	}
	c.put(&Order{ID: "ord-1", Summary: "one"})
	o, ok := c.get("ord-1")
	if !ok || o.Summary != "one" || o.Receipt != nil {
		t.Fatalf("got %+v, %v", o, ok)
	}
	// Pay sets the receipt on its copy before storing: the cache must not
	// see it until put.
	o.Receipt = []byte("receipt")
	if o, _ := c.get("ord-1"); o.Receipt != nil {
		t.Fatal("a change to a returned order reached the cache")
	}
	c.put(o)
	if o, _ := c.get("ord-1"); string(o.Receipt) != "receipt" {
		t.Fatalf("paid order cached as %+v", o)
	}
	// A read of the store from before the payment comes in late.
	c.put(&Order{ID: "ord-1", Summary: "one"})
	if o, _ := c.get("ord-1"); o.Receipt == nil {
		t.Fatal("an unpaid copy replaced the paid order")
	}
}

func TestOrderCacheEvictsOldest(t *testing.T) {
	c := newOrderCache()
	id := func(i int) string { return fmt.Sprintf("ord-%d", i) }
	for i := range orderCacheSize {
		c.put(&Order{ID: id(i)})
	}
	c.put(&Order{ID: id(0), Receipt: []byte("r")}) // an update takes no new slot
	for i := range orderCacheSize {
		if _, ok := c.get(id(i)); !ok {
			t.Fatalf("%s evicted from a cache that is not full", id(i))
		}
	}
	for i := orderCacheSize; i < orderCacheSize+10; i++ {
		c.put(&Order{ID: id(i)})
	}
	if len(c.m) != orderCacheSize {
		t.Fatalf("cache holds %d orders, want %d", len(c.m), orderCacheSize)
	}
	for i := range orderCacheSize + 10 {
		_, ok := c.get(id(i))
		if want := i >= 10; ok != want {
			t.Errorf("%s cached: %v, want %v", id(i), ok, want)
		}
	}
}

// TestOrderCacheLateRead: a read of the store that a payment overtook must
// not cache the unpaid order it read, even once the paid one was evicted.
func TestOrderCacheLateRead(t *testing.T) {
	c := newOrderCache()
	unpaid := &Order{ID: "ord-x"}
	seen := c.mark()                                 // Order misses the cache, then reads the store ...
	c.put(&Order{ID: "ord-x", Receipt: []byte("r")}) // ... while Pay stores the payment,
	for i := range orderCacheSize {                  // which other orders evict.
		c.put(&Order{ID: fmt.Sprint("other-", i)})
	}
	if _, ok := c.get("ord-x"); ok {
		t.Fatal("paid order not evicted: the test proves nothing")
	}
	c.putRead(unpaid, seen)
	if o, ok := c.get("ord-x"); ok {
		t.Fatalf("the late read cached %+v", o)
	}
	// With no payment stored since the mark, a read is cached; a paid one
	// always is.
	seen = c.mark()
	c.putRead(&Order{ID: "ord-y"}, seen)
	c.put(&Order{ID: "ord-z", Receipt: []byte("r")})
	c.putRead(&Order{ID: "ord-w", Receipt: []byte("r")}, seen)
	for _, id := range []string{"ord-y", "ord-w"} {
		if _, ok := c.get(id); !ok {
			t.Errorf("%s not cached", id)
		}
	}
}
