package pgstore

import (
	"context"

	"github.com/blindbank/blindbank/bank"
)

func (r *replicas) LogHead(ctx context.Context) (int64, bank.KeySetRef, bool, error) {
	return r.next().LogHead(ctx)
}
