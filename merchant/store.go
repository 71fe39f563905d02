package merchant

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
)

// Key layout of the merchant's Pebble store (StoreDir), in outline; each
// file that keeps records says more:
//
//	m/merchant-format u32 on-disk format version (storeFormat): 1 is this
//	                  layout and every earlier one, which stores made before
//	                  the record have; a newer one is refused, unread
//	m/master          the bank's master key, pinned (keys.go)
//	m/keyset          the bank's key set held, which a restart starts from
//	m/witness         the newest audit-log checkpoint seen (logcheck.go)
//	m/settle-span     the span of the settlement periods checked (settlement.go)
//	m/closed          Close's last write; m/opened when this run opened (reconcile.go)
//	m/endorsed-marks, m/pruned-to, t/serial-limit, s/, e/: the till (till.go)
//	o/<order id>      order: its signed payment request and, once paid, the receipt
//	d/<order id>...   a deposit in flight (reconcile.go)
//	f/<order id>...   a refund: the signed request and the bank's receipt (refund.go)
//	v/<order id>      an order verified in the audit log; w/ and l/ a
//	                  payment order's (logcheck.go)
//	sp/<payment hash> a payment a checked settlement statement held
//
// The format record's key is the merchant's own, m/merchant-format: every
// kind of store refuses another kind's (pebblestore.Format).
var keyFormat = []byte(pebblestore.MerchantFormatKey)

// storeFormat is the merchant store's format record. Raise its Version
// when a record changes so that this build could not read it: a build
// that knows only the older version then refuses the store
// (ErrStoreTooNew) rather than misread it. Builds before the record read
// every store without a check; nothing can stop those.
var storeFormat = pebblestore.Format{Key: keyFormat, Store: "merchant", Version: 1}

// openDB opens the order store at path, Open's and the offline commands'
// way in, and checks its format (storeFormat) before anything else reads
// or writes it. Read-write, it creates the store if there is none and
// records the format in one that lacks it; o.ReadOnly, it writes nothing.
func openDB(path string, o pebblestore.DBOptions) (*pebble.DB, error) {
	db, err := storeFormat.OpenDB(path, o)
	if err != nil {
		return nil, fmt.Errorf("merchant: open %s: %w", path, err)
	}
	return db, nil
}
