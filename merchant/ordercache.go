package merchant

import "sync"

// orderCacheSize bounds the orders kept in memory: an order summary is at
// most MaxSummaryLen, so the cache holds at most a few MiB.
const orderCacheSize = 1024

// orderCache keeps the orders most recently stored or read, so that a
// payment's two reads of its order (GetPaymentRequest, then Pay) and the
// shop's status queries do not each walk the store. It is only a copy of
// the store: an order changes once, from unpaid to paid, and put never
// replaces a paid order with an unpaid one, so a read that raced a payment
// cannot leave a stale entry behind. Entries are evicted oldest first.
type orderCache struct {
	mu   sync.Mutex
	m    map[string]*Order
	ring [orderCacheSize]string // ids in the order they entered
	next int
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

// put caches a copy of o, as the store holds it now.
func (c *orderCache) put(o *Order) {
	cp := *o
	c.mu.Lock()
	defer c.mu.Unlock()
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
