package bank

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bank's business counters. Labels stay low-cardinality:
// denomination values and outcome names, never accounts or coins.
type metrics struct {
	coinsIssued   *prometheus.CounterVec // by denomination value and cipher
	coinsRedeemed *prometheus.CounterVec
	doubleSpends  prometheus.Counter
	checks        *prometheus.CounterVec // by outcome
	authFailures  prometheus.Counter
}

// Instrument registers the bank's counters with reg; an uninstrumented bank
// counts nothing.
func (b *Bank) Instrument(reg prometheus.Registerer) error {
	m := &metrics{
		coinsIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindbank_coins_issued_total", Help: "Coins blind-signed, by denomination value and cipher.",
		}, []string{"value", "cipher"}),
		coinsRedeemed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindbank_coins_redeemed_total", Help: "Coins deposited, by denomination value and cipher.",
		}, []string{"value", "cipher"}),
		doubleSpends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blindbank_double_spend_attempts_total", Help: "Deposits refused because a coin was already spent.",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindbank_checks_total", Help: "Electronic payment orders decided, by outcome.",
		}, []string{"outcome"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blindbank_auth_failures_total", Help: "Failed authentications of existing accounts.",
		}),
	}
	for _, c := range []prometheus.Collector{m.coinsIssued, m.coinsRedeemed, m.doubleSpends, m.checks, m.authFailures} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	b.metrics = m
	return nil
}

func (b *Bank) countCoins(vec func(*metrics) *prometheus.CounterVec, keys []*DenomKey) {
	if b.metrics == nil {
		return
	}
	for _, d := range keys {
		vec(b.metrics).WithLabelValues(d.Value.String(), d.Key.Cipher().String()).Inc()
	}
}
