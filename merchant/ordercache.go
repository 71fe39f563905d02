package merchant

import "sync"

// orderCacheSize bounds the orders kept in memory: an order summary is at
// most MaxSummaryLen, so the cache holds at most a few MiB.
const orderCacheSize = 1024

// orderCache keeps the orders last stored or read, first in first out, so
// that a payment's two reads of its order (GetPaymentRequest, then Pay)
// and the shop's status queries do not each walk the store. It is only a
// copy of the store, and an order changes once, from unpaid to paid:
// put never replaces a paid order with an unpaid one, and a read of the
// store that a payment may have overtaken (seen by paidPuts moving) is not
// cached unless it is paid, so no stale unpaid copy can outlive the write
// of the paid one, even if that was evicted meanwhile.
type orderCache struct {
	mu       sync.Mutex
	m        map[string]*Order
	ring     [orderCacheSize]string // ids in the order they entered
	next     int
	paidPuts uint64 // puts of paid orders so far
}

func newOrderCache() *orderCache {
	return &orderCache{m: make(map[string]*Order, orderCacheSize)}
}

// get returns a copy of the cached order; the caller may set its fields
// but must not change the bytes they share with the cache.
func (c *orderCache) get(id string) (*Order, bool) {
	c.mu.Lock()
	o, ok := c.m[id]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	cp := *o
	return &cp, true
}

// mark returns what putRead needs to know whether a payment was stored
// since: call it before reading the store.
func (c *orderCache) mark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paidPuts
}

// put caches a copy of o, just written to the store.
func (c *orderCache) put(o *Order) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(o)
}

// putRead caches a copy of o, read from the store after mark returned
// seen, unless o is unpaid and a payment has been stored since.
func (c *orderCache) putRead(o *Order, seen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o.Receipt == nil && c.paidPuts != seen {
		return
	}
	c.add(o)
}

func (c *orderCache) add(o *Order) {
	cp := *o
	if o.Receipt != nil {
		c.paidPuts++
	}
	if old, ok := c.m[o.ID]; ok {
		if old.Receipt == nil {
			c.m[o.ID] = &cp
		}
		return
	}
	if evict := c.ring[c.next]; evict != "" {
		delete(c.m, evict)
	}
	c.ring[c.next] = o.ID
	c.next = (c.next + 1) % len(c.ring)
	c.m[o.ID] = &cp
}
